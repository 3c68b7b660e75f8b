package mesos

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

// Rules marked "Mesos" or "Marathon" are what those programs enforce (see
// the reference for file and line). Rules marked "ours" are stricter checks
// for csi-libstorage that catch configurations Mesos accepts but that break
// or endanger data with our plugin.

var (
	// Mesos (provider.cpp): SLRP name and plugin name.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	// Mesos (provider.cpp): plugin type is dot-separated tokens.
	typeRE = regexp.MustCompile(`^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$`)
	// Marathon (PathId): app id segments.
	appIDSegmentRE = regexp.MustCompile(`^(([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$`)
	// Ours: disk profile names. Mesos puts no rule on them (disk_profile_utils.cpp
	// validates selectors and capabilities only); hyphens are fine here,
	// unlike in RP and plugin names.
	profileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// FSTypes are the filesystems the plugin formats.
var FSTypes = []string{"ext4", "xfs", "btrfs"}

// PluginFlags returns the names of csi-libstorage's command-line flags,
// read from the flag set the binary parses.
func PluginFlags() []string {
	fs := flag.NewFlagSet("csi-libstorage", flag.ContinueOnError)
	wiring.RegisterFlags(fs, nil)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// BackendParameters maps each backend type to the CreateVolume parameter
// keys only it accepts, as the backends export them.
func BackendParameters() map[string][]string {
	return map[string][]string{
		file.Type: {file.ParamPreallocate},
		ebs.Type:  slices.Clone(ebs.ParameterKeys),
	}
}

// AcceptedCreateParameters lists every CreateVolume parameter key some
// configured backend can accept: the keys every backend takes plus each
// backend's own.
func AcceptedCreateParameters() []string {
	keys := slices.Clone(params.Common)
	for _, own := range BackendParameters() {
		for _, k := range own {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }
func (p *problems) wrap(prefix string, err error) {
	if err != nil {
		*p = append(*p, fmt.Errorf("%s: %w", prefix, err))
	}
}
func (p problems) err() error { return errors.Join(p...) }

// Validate checks a CSIPluginInfo as a file in --csi_plugin_config_dir.
func (c *CSIPluginInfo) Validate() error { return c.validate(false) }

func (c *CSIPluginInfo) validate(slrp bool) error {
	var p problems
	if !typeRE.MatchString(c.Type) {
		p.add("type %q must be dot-separated tokens of [A-Za-z0-9_] (Mesos)", c.Type)
	}
	// Mesos requires this of SLRP plugins; ours for isolator plugins too, as
	// the name becomes part of a container id and of <work_dir> paths.
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		p.add("name %q must match [A-Za-z0-9_]+ (no hyphens)", c.Name)
	}
	switch {
	case len(c.Containers) > 0 && len(c.Endpoints) > 0:
		p.add("set exactly one of containers and endpoints, not both (Mesos)")
	case len(c.Containers) == 0 && len(c.Endpoints) == 0:
		p.add("set exactly one of containers and endpoints (Mesos)")
	}
	if slrp && len(c.Endpoints) > 0 {
		p.add("a storage resource provider cannot use endpoints: it always launches the plugin (Mesos)")
	}
	if c.TargetPathRoot != "" {
		if !path.IsAbs(c.TargetPathRoot) {
			p.add("target_path_root %q must be an absolute path", c.TargetPathRoot)
		}
		if len(c.Containers) > 0 {
			// Ours: Mesos propagates only the default root into a managed
			// plugin's container, so mounts below another root are invisible.
			p.add("target_path_root is only for unmanaged (endpoints) plugins: a managed container only sees the default mount root")
		}
	}
	if slrp && c.TargetPathRoot != "" {
		p.add("target_path_root is not used by a storage resource provider")
	}

	seen := map[string]bool{}
	for i, ct := range c.Containers {
		pre := fmt.Sprintf("containers[%d]", i)
		if len(ct.Services) == 0 {
			p.add("%s: services is empty", pre)
		}
		for _, s := range ct.Services {
			if s != ControllerService && s != NodeService {
				p.add("%s: service %q must be CONTROLLER_SERVICE or NODE_SERVICE", pre, s)
				continue
			}
			if seen[s] {
				p.add("%s: service %s is served by more than one container", pre, s)
			}
			seen[s] = true
		}
		if ct.Command == nil || (ct.Command.Value == "" && ct.Container == nil) {
			p.add("%s: command.value is required", pre)
		}
		p.wrap(pre, validateResources(ct.Resources))
		if ct.Container != nil && ct.Container.Type != "MESOS" {
			p.add("%s: container.type must be MESOS (plugins run as Mesos standalone containers)", pre)
		}
		if c.Type == PluginType && ct.Command != nil {
			p.wrap(pre+".command", checkOurCommand(ct.Command, ct.Services))
		}
	}
	for i, e := range c.Endpoints {
		pre := fmt.Sprintf("endpoints[%d]", i)
		if e.CSIService != ControllerService && e.CSIService != NodeService {
			p.add("%s: csi_service %q must be CONTROLLER_SERVICE or NODE_SERVICE", pre, e.CSIService)
		} else if seen[e.CSIService] {
			p.add("%s: service %s has more than one endpoint", pre, e.CSIService)
		}
		seen[e.CSIService] = true
		sock, ok := strings.CutPrefix(e.Endpoint, "unix://")
		if !ok || !path.IsAbs(sock) {
			p.add("%s: endpoint %q must be unix:///absolute/path", pre, e.Endpoint)
		}
	}
	if !seen[NodeService] {
		p.add("no container or endpoint serves NODE_SERVICE (Mesos requires it)")
	}
	if slrp && !seen[ControllerService] {
		// Mesos: the SLRP asks for both services and the agent CHECK-fails
		// (aborts) when one has no container.
		p.add("a storage resource provider needs CONTROLLER_SERVICE and NODE_SERVICE; CONTROLLER_SERVICE is missing (the agent would abort)")
	}
	return p.err()
}

func validateResources(rs []Resource) error {
	var p problems
	names := map[string]bool{}
	for _, r := range rs {
		if r.Name == "" {
			p.add("resource without a name")
		}
		if names[r.Name] {
			p.add("resource %q listed twice", r.Name)
		}
		names[r.Name] = true
		if r.Type != "SCALAR" {
			p.add("resource %q: type %q; only SCALAR resources are supported here", r.Name, r.Type)
			continue
		}
		if r.Scalar == nil || r.Scalar.Value <= 0 {
			p.add("resource %q: scalar.value must be > 0", r.Name)
		}
	}
	return p.err()
}

// unquote strips one pair of surrounding quotes.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

func isEnvRef(v, name string) bool {
	v = unquote(v)
	return v == "$"+name || v == "${"+name+"}"
}

// ParseCommand splits a shell command line that runs csi-libstorage into the
// binary and its flags. It understands `exec BIN --flag=value --flag value`.
func ParseCommand(value string) (bin string, flags map[string]string, err error) {
	tok := strings.Fields(value)
	if len(tok) > 0 && tok[0] == "exec" {
		tok = tok[1:]
	}
	if len(tok) == 0 {
		return "", nil, errors.New("empty command")
	}
	bin, flags = tok[0], map[string]string{}
	for i := 1; i < len(tok); i++ {
		t := tok[i]
		name, ok := strings.CutPrefix(t, "--")
		if !ok {
			return bin, flags, fmt.Errorf("unexpected argument %q", t)
		}
		val := ""
		if n, v, eq := strings.Cut(name, "="); eq {
			name, val = n, v
		} else if i+1 < len(tok) && !strings.HasPrefix(tok[i+1], "--") {
			val = tok[i+1]
			i++
		}
		if _, dup := flags[name]; dup {
			return bin, flags, fmt.Errorf("flag --%s given twice", name)
		}
		flags[name] = val
	}
	return bin, flags, nil
}

// checkOurCommand (ours) checks the command of a managed csi-libstorage
// container against the plugin's real flags.
func checkOurCommand(cmd *CommandInfo, services []string) error {
	var p problems
	if !cmd.IsShell() {
		p.add("shell must be true: $CSI_ENDPOINT and $MESOS_AGENT_ID are only expanded by a shell")
		return p.err()
	}
	bin, flags, err := ParseCommand(cmd.Value)
	if err != nil {
		p.add("%v", err)
	}
	if bin != BinaryPath && path.Base(bin) != "csi-libstorage" {
		p.add("command runs %q, not %s", bin, BinaryPath)
	}
	known := PluginFlags()
	for f := range flags {
		if !slices.Contains(known, f) {
			p.add("unknown flag --%s (csi-libstorage has --%s)", f, strings.Join(known, ", --"))
		}
	}
	if ep, ok := flags["endpoint"]; !ok || !isEnvRef(ep, "CSI_ENDPOINT") {
		p.add("a managed plugin must listen on the socket Mesos chose: pass --endpoint=$CSI_ENDPOINT")
	}
	if id, ok := flags["node-id"]; ok && !isEnvRef(id, "MESOS_AGENT_ID") {
		p.add("--node-id must be $MESOS_AGENT_ID (one file serves every agent), not %q", id)
	} else if ok && !slices.Contains(services, NodeService) {
		// Mesos (service_manager.cpp) sets MESOS_AGENT_ID only in
		// containers that serve NODE_SERVICE.
		p.add("--node-id=$MESOS_AGENT_ID on a container without NODE_SERVICE: Mesos sets MESOS_AGENT_ID only for node containers, so it expands to nothing")
	}
	mode, ok := flags["mode"]
	if !ok {
		mode = "all"
	}
	switch mode {
	case "all":
	case "controller", "node":
		for _, s := range services {
			if s != strings.ToUpper(mode)+"_SERVICE" {
				p.add("--mode=%s does not serve %s", mode, s)
			}
		}
	default:
		p.add("--mode %q must be controller, node or all", mode)
	}
	if cfg := unquote(flags["config"]); !path.IsAbs(cfg) {
		p.add("pass --config=/absolute/path/to/config.yaml: without it the plugin has no backend")
	}
	if lf, ok := flags["log-format"]; ok && lf != "json" && lf != "console" {
		p.add("--log-format %q must be json or console", lf)
	}
	return p.err()
}

// Validate checks a ResourceProviderInfo as Mesos's SLRP does.
func (r *ResourceProviderInfo) Validate() error {
	var p problems
	if len(r.ID) > 0 {
		p.add("id must not be set (Mesos assigns it)")
	}
	if r.Type != SLRPType {
		p.add("type %q: the agent only runs %s", r.Type, SLRPType)
	}
	if !nameRE.MatchString(r.Name) {
		p.add("name %q must match [A-Za-z0-9_]+ (Mesos; no hyphens)", r.Name)
	}
	for i, res := range r.DefaultReservations {
		if res.Type != "DYNAMIC" && res.Type != "STATIC" {
			p.add("default_reservations[%d]: type %q must be DYNAMIC or STATIC", i, res.Type)
		}
		if res.Role == "" || res.Role == "*" {
			p.add("default_reservations[%d]: a reservation needs a role other than *", i)
		}
	}
	switch {
	case r.Storage == nil:
		p.add("storage is required for %s", SLRPType)
	case r.Storage.Plugin == nil:
		p.add("storage.plugin is required")
	default:
		pl := r.Storage.Plugin
		if pl.Name == "" || !nameRE.MatchString(pl.Name) {
			// Mesos defaults the name to "default"; we want it explicit so
			// that it never collides with an isolator plugin's default.
			p.add("storage.plugin.name %q must be set and match [A-Za-z0-9_]+ (no hyphens)", pl.Name)
		}
		p.wrap("storage.plugin", pl.validate(true))
	}
	return p.err()
}

// Validate checks a DiskProfileMapping as the URI disk profile adaptor does,
// plus our safety rules.
func (m *DiskProfileMapping) Validate() error {
	var p problems
	if len(m.ProfileMatrix) == 0 {
		p.add("profile_matrix is empty")
	}
	names := make([]string, 0, len(m.ProfileMatrix))
	for n := range m.ProfileMatrix {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !profileNameRE.MatchString(n) {
			p.add("profile %q: name must match %s", n, profileNameRE)
		}
		p.wrap(fmt.Sprintf("profile %q", n), m.ProfileMatrix[n].validate())
	}
	return p.err()
}

func (c CSIManifest) validate() error {
	var p problems
	// Mesos: exactly one selector, with its fields set.
	switch {
	case c.ResourceProviderSelector != nil && c.CSIPluginTypeSelector != nil:
		p.add("set one selector, not both")
	case c.ResourceProviderSelector != nil:
		if len(c.ResourceProviderSelector.ResourceProviders) == 0 {
			p.add("resource_provider_selector lists no resource provider")
		}
		for _, rp := range c.ResourceProviderSelector.ResourceProviders {
			if rp.Type == "" || rp.Name == "" {
				p.add("resource_provider_selector entries need type and name (Mesos)")
			}
		}
	case c.CSIPluginTypeSelector != nil:
		if c.CSIPluginTypeSelector.PluginType == "" {
			p.add("csi_plugin_type_selector.plugin_type is required (Mesos)")
		}
	default:
		p.add("a selector is required: resource_provider_selector or csi_plugin_type_selector (Mesos)")
	}
	if c.VolumeCapabilities == nil {
		p.add("volume_capabilities is required (Mesos)")
		return p.err()
	}
	vc := c.VolumeCapabilities
	p.wrap("volume_capabilities", vc.validate())
	// Ours: parameters that contradict the capability or are unsafe.
	for k, v := range c.CreateParameters {
		switch k {
		case "":
			p.add("create_parameters has an empty key")
		case "fsType", "newfstype":
			if vc.Block != nil {
				p.add("create_parameters.%s makes no sense for a block profile", k)
			} else if vc.Mount != nil && vc.Mount.FSType != "" && vc.Mount.FSType != v {
				p.add("create_parameters.%s=%q contradicts mount.fs_type %q", k, v, vc.Mount.FSType)
			}
		case "overwritefs":
			if v == "true" {
				p.add("create_parameters.overwritefs=true would reformat volumes; it is refused unless the plugin runs with allowOverwrite")
			}
		case "size":
			p.add("create_parameters.size conflicts with the disk size Mesos sends as capacity_range; drop it")
		}
	}
	return p.err()
}

func (v *VolumeCapability) validate() error {
	var p problems
	if (v.Mount == nil) == (v.Block == nil) {
		p.add("set exactly one of mount and block")
	}
	if v.Mount != nil {
		p.wrap("mount", checkMount(v.Mount.FSType, v.Mount.MountFlags))
	}
	if v.AccessMode == nil {
		p.add("access_mode is required (Mesos)")
	} else if !slices.Contains(AccessModes, v.AccessMode.Mode) {
		p.add("access_mode.mode %q is not one of the CSI 1.1.0 modes %v", v.AccessMode.Mode, AccessModes)
	}
	return p.err()
}

func checkMount(fsType string, flags []string) error {
	var p problems
	if fsType != "" && !slices.Contains(FSTypes, fsType) {
		p.add("fs type %q: csi-libstorage formats only %v", fsType, FSTypes)
	}
	n := 0
	for _, f := range flags {
		n += len(f)
	}
	if n > 4096 {
		p.add("mount flags exceed 4 KiB (CSI, Mesos)")
	}
	return p.err()
}

// CheckCreateParameters reports keys that no backend accepts.
func CheckCreateParameters(in map[string]string) error {
	var p problems
	accepted := AcceptedCreateParameters()
	for k := range in {
		if !slices.Contains(accepted, k) {
			p.add("create parameter %q is not accepted by csi-libstorage (accepted: %v)", k, accepted)
		}
	}
	return p.err()
}

// Validate checks the Modules JSON for the URI disk profile adaptor.
func (m *Modules) Validate() error {
	var p problems
	if len(m.Libraries) == 0 {
		p.add("libraries is empty")
	}
	for i, l := range m.Libraries {
		if (l.File == "") == (l.Name == "") {
			p.add("libraries[%d]: set one of file and name", i)
		}
		if l.File != "" && !path.IsAbs(l.File) {
			p.add("libraries[%d]: file %q must be absolute", i, l.File)
		}
		if len(l.Modules) == 0 {
			p.add("libraries[%d]: modules is empty", i)
		}
		for _, mod := range l.Modules {
			if mod.Name == "" {
				p.add("libraries[%d]: module without a name", i)
			}
			if mod.Name == UriDiskProfileAdaptor {
				keys := map[string]string{}
				for _, kv := range mod.Parameters {
					keys[kv.Key] = kv.Value
				}
				if keys["uri"] == "" {
					p.add("%s needs the parameter uri", mod.Name)
				}
				for k := range keys {
					if k != "uri" && k != "poll_interval" && k != "max_random_wait" {
						p.add("%s: unknown parameter %q", mod.Name, k)
					}
				}
			}
		}
	}
	return p.err()
}

// UriDiskProfileAdaptor is the module name for --disk_profile_adaptor.
const UriDiskProfileAdaptor = "org_apache_mesos_UriDiskProfileAdaptor"

// RequiredAgentCapabilities must all be listed when --agent_features is set
// (Mesos 1.11 agent flag help: "We always require ...").
var RequiredAgentCapabilities = []string{
	"MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT", "AGENT_OPERATION_FEEDBACK",
	"RESOURCE_PROVIDER", "AGENT_DRAINING", "TASK_RESOURCE_LIMITS",
}

// DefaultAgentCapabilities is what an agent enables when --agent_features is
// not set (AGENT_CAPABILITIES() in Mesos 1.11 src/slave/constants.cpp). A
// --agent_features file replaces this list, so it turns off whatever it
// leaves out.
var DefaultAgentCapabilities = append(slices.Clone(RequiredAgentCapabilities), "RESIZE_VOLUME")

// Validate checks --agent_features: the capabilities Mesos requires
// (Mesos), and every other default, so that setting the flag never turns a
// feature off unnoticed (ours: leaving out RESIZE_VOLUME disables volume
// resizing on the agent).
func (a *AgentFeatures) Validate() error {
	var p problems
	have := map[string]bool{}
	for _, c := range a.Capabilities {
		have[c.Type] = true
	}
	for _, r := range DefaultAgentCapabilities {
		switch {
		case have[r]:
		case slices.Contains(RequiredAgentCapabilities, r):
			p.add("capability %s is missing; the agent refuses to start without it", r)
		default:
			p.add("capability %s is missing; the agent enables it by default and this file would turn it off (leave --agent_features unset, or list every default)", r)
		}
	}
	return p.err()
}

// Validate checks a Marathon app as Marathon does for external volumes, plus
// our rules for single-writer apps.
func (a *MarathonApp) Validate() error {
	var p problems
	if a.ID == "" {
		p.add("id is required")
	}
	for _, seg := range strings.Split(strings.Trim(a.ID, "/"), "/") {
		if a.ID != "" && !appIDSegmentRE.MatchString(seg) {
			p.add("id segment %q is not a valid Marathon path segment", seg)
		}
	}
	n := a.InstanceCount()
	if n < 0 {
		p.add("instances must be >= 0")
	}
	if a.Container == nil {
		return p.err()
	}
	var csi, dvdi, writers, nonShareable, rwMNSW int
	for i, v := range a.Container.Volumes {
		pre := fmt.Sprintf("container.volumes[%d]", i)
		if v.ContainerPath == "" {
			p.add("%s: containerPath is required", pre)
		}
		if v.Secret != "" {
			if v.Mode != "" || v.External != nil || v.HostPath != "" || len(v.Persistent) > 0 {
				p.add("%s: a secret volume has only containerPath and secret", pre)
			}
			continue
		}
		if v.Mode != "RW" && v.Mode != "RO" {
			p.add("%s: mode %q must be RW or RO", pre, v.Mode)
		}
		if v.External == nil {
			continue
		}
		ext := v.External
		switch ext.Provider {
		case "csi":
			csi++
			opts, err := ext.CSIOptions()
			if err != nil {
				p.add("%s.external.options: %v", pre, err)
				continue
			}
			p.wrap(pre+".external", checkCSIVolume(v, opts))
			mode := ""
			if opts.Capability != nil {
				mode = opts.Capability.AccessMode
			}
			if !strings.HasPrefix(mode, "MULTI_NODE_") {
				nonShareable++
			}
			if v.Mode == "RW" && mode == MultiNodeSingleWriter {
				rwMNSW++
			}
			if v.Mode == "RW" && mode != MultiNodeMultiWriter {
				writers++
			}
		case "dvdi":
			dvdi++
			p.wrap(pre+".external", checkDVDIVolume(v))
		default:
			p.add("%s.external.provider %q is unknown (csi or dvdi)", pre, ext.Provider)
		}
	}
	if csi > 0 && a.Container.Type != "MESOS" {
		p.add("container.type must be MESOS for csi volumes (Mesos supports CSI volumes in Mesos containers only)")
	}
	// Marathon allows 0 (an app scaled down keeps its definition).
	if nonShareable > 0 && n > 1 {
		p.add("instances must be <= 1 while non-shareable (SINGLE_NODE_*) CSI volumes are defined (Marathon)")
	}
	// Marathon applies this only when every CSI volume of the app is a RW
	// MULTI_NODE_SINGLE_WRITER mount; ours applies it when any is.
	if rwMNSW > 0 && n > 1 {
		p.add("instances must be <= 1 while a MULTI_NODE_SINGLE_WRITER volume is mounted RW")
	}
	if writers > 0 || dvdi > 0 {
		p.wrap("single writer", a.checkSingleWriter(dvdi > 0))
	}
	if dvdi > 0 && n > 1 {
		p.add("instances must be <= 1 with dvdi volumes (Marathon)")
	}
	return p.err()
}

// checkSingleWriter: Marathon enforces these upgrade limits for dvdi; we
// enforce them, explicitly, for every app with a CSI writer, so that an
// upgrade or restart never runs two copies, and we require Marathon not to
// replace an unreachable instance on its own (that is the dead-agent case,
// which needs fencing and an operator).
func (a *MarathonApp) checkSingleWriter(dvdi bool) error {
	var p problems
	us := a.UpgradeStrategy
	if us == nil || us.MinimumHealthCapacity == nil || us.MaximumOverCapacity == nil {
		p.add("set upgradeStrategy {minimumHealthCapacity: 0, maximumOverCapacity: 0} explicitly")
	} else {
		if *us.MaximumOverCapacity != 0 {
			p.add("upgradeStrategy.maximumOverCapacity must be 0: a value above 0 starts the new copy before the old one stops")
		}
		if *us.MinimumHealthCapacity > 0.5 {
			p.add("upgradeStrategy.minimumHealthCapacity must be <= 0.5")
		}
	}
	if !dvdi {
		var s string
		if json.Unmarshal(a.UnreachableStrategy, &s) != nil || s != "disabled" {
			p.add(`set "unreachableStrategy": "disabled": otherwise Marathon starts a replacement while the unreachable copy may still be writing`)
		}
	}
	return p.err()
}

// CSIOptions decodes options of a csi external volume strictly.
func (e *ExternalVolume) CSIOptions() (*CSIVolumeOptions, error) {
	if len(e.Options) == 0 {
		return nil, errors.New("options are required for provider csi")
	}
	var o CSIVolumeOptions
	if err := DecodeStrict(e.Options, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

func checkCSIVolume(v MarathonVolume, o *CSIVolumeOptions) error {
	var p problems
	e := v.External
	if e.Name == "" {
		p.add("name (the CSI volume id) is required")
	}
	if e.Size != nil || e.Shared != nil {
		p.add("size and shared belong to provider dvdi; a csi volume must exist already (create it with csictl)")
	}
	if o.PluginName != PluginType {
		p.add("options.pluginName %q must be %q (the type in the plugin's CSIPluginInfo)", o.PluginName, PluginType)
	} else if inst, native, ok := strings.Cut(e.Name, "/"); !ok || inst == "" || native == "" {
		p.add("name %q is not a csi-libstorage volume id (<backend>/<native-id>)", e.Name)
	}
	if len(o.NodeStageSecret) > 0 || len(o.NodePublishSecret) > 0 {
		p.add("nodeStageSecret/nodePublishSecret are dropped by Mesos on the volume/csi path; the plugin would never see them")
	}
	c := o.Capability
	if c == nil {
		p.add("options.capability is required")
		return p.err()
	}
	switch c.AccessType {
	case "mount":
		p.wrap("capability", checkMount(c.FSType, c.MountFlags))
	case "block":
		if c.FSType != "" || len(c.MountFlags) > 0 {
			p.add("capability: fsType and mountFlags apply to accessType mount only")
		}
	default:
		p.add("capability.accessType %q must be mount or block", c.AccessType)
	}
	if !slices.Contains(AccessModes, c.AccessMode) {
		p.add("capability.accessMode %q is not one of %v", c.AccessMode, AccessModes)
	}
	if v.Mode == "RW" && strings.HasSuffix(c.AccessMode, "_READER_ONLY") {
		p.add("mode RW with accessMode %s: a read-only access mode must be mounted RO (Marathon, Mesos)", c.AccessMode)
	}
	return p.err()
}

func checkDVDIVolume(v MarathonVolume) error {
	var p problems
	var opts map[string]string
	if len(v.External.Options) > 0 {
		if err := DecodeStrict(v.External.Options, &opts); err != nil {
			p.add("options: %v", err)
		}
	}
	if opts["dvdi/driver"] == "" {
		p.add("options.dvdi/driver is required")
	}
	if v.External.Name == "" {
		p.add("name is required")
	}
	if v.Mode != "RW" {
		p.add("mode must be RW for dvdi volumes in MESOS containers (Marathon)")
	}
	return p.err()
}

// CheckUniqueCSIVolumes is Marathon's root-group rule for CSI volume names
// (ProviderValidationHelpers.validateUniqueVolumes). A volume claims its
// name for its app when its access mode is not shareable (SINGLE_NODE_*)
// or it is a RW mount of a MULTI_NODE_SINGLE_WRITER volume. Every other
// use of a claimed name by another app conflicts, except a RO mount of a
// MULTI_NODE_SINGLE_WRITER volume: readers of a single-writer volume may
// run next to its writer. Names nobody claims (MULTI_NODE_READER_ONLY,
// MULTI_NODE_MULTI_WRITER, RO MULTI_NODE_SINGLE_WRITER) may be shared.
func CheckUniqueCSIVolumes(apps []*MarathonApp) error {
	claimedBy := map[string][]string{}
	forEachCSIVolume(apps, func(a *MarathonApp, v MarathonVolume, access string) {
		shareable := strings.HasPrefix(access, "MULTI_NODE_")
		claiming := !shareable || (v.Mode != "RO" && access == MultiNodeSingleWriter)
		if claiming && !slices.Contains(claimedBy[v.External.Name], a.ID) {
			claimedBy[v.External.Name] = append(claimedBy[v.External.Name], a.ID)
		}
	})
	var p problems
	forEachCSIVolume(apps, func(a *MarathonApp, v MarathonVolume, access string) {
		if v.Mode == "RO" && access == MultiNodeSingleWriter {
			return
		}
		var others []string
		for _, id := range claimedBy[v.External.Name] {
			if id != a.ID {
				others = append(others, id)
			}
		}
		if len(others) > 0 {
			p.add("csi volume %q of %s (%s %s) conflicts with %s, which claim it with a single-node mode or a RW MULTI_NODE_SINGLE_WRITER mount (Marathon)",
				v.External.Name, a.ID, v.Mode, access, strings.Join(others, ", "))
		}
	})
	return p.err()
}

// forEachCSIVolume calls fn for every csi external volume of apps, with its
// access mode ("" when the options do not decode).
func forEachCSIVolume(apps []*MarathonApp, fn func(a *MarathonApp, v MarathonVolume, access string)) {
	for _, a := range apps {
		if a.Container == nil {
			continue
		}
		for _, v := range a.Container.Volumes {
			if v.External == nil || v.External.Provider != "csi" {
				continue
			}
			access := ""
			if o, err := v.External.CSIOptions(); err == nil && o.Capability != nil {
				access = o.Capability.AccessMode
			}
			fn(a, v, access)
		}
	}
}
