package check

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/csi-libstorage/csi-libstorage/internal/capability"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
)

// LoadNomad parses every *.hcl file in dir.
func LoadNomad(dir string) (map[string]*Body, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err != nil {
		return nil, err
	}
	out := map[string]*Body{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		b, err := ParseHCL(filepath.Base(p), raw)
		if err != nil {
			return nil, err
		}
		out[filepath.Base(p)] = b
	}
	return out, nil
}

// The parts of Nomad's job and volume specifications the checks read,
// decoded strictly: Nomad refuses an unknown argument in these blocks, and
// so does the check. Free-form blocks (parameters, secrets, context) are
// taken whole.
type (
	nomadCSIPlugin struct {
		ID                  string `hcl:"id"`
		Type                string `hcl:"type"`
		MountDir            string `hcl:"mount_dir,optional"`
		StagePublishBaseDir string `hcl:"stage_publish_base_dir,optional"`
		HealthTimeout       string `hcl:"health_timeout,optional"`
	}
	nomadMountOptions struct {
		FSType     string   `hcl:"fs_type,optional"`
		MountFlags []string `hcl:"mount_flags,optional"`
	}
	nomadCapability struct {
		AccessMode     string `hcl:"access_mode"`
		AttachmentMode string `hcl:"attachment_mode"`
	}
	nomadFreeForm struct {
		Rest hcl.Body `hcl:",remain"`
	}
	nomadGroupVolume struct {
		Type           string              `hcl:"type"`
		Source         string              `hcl:"source"`
		ReadOnly       bool                `hcl:"read_only,optional"`
		AccessMode     string              `hcl:"access_mode,optional"`
		AttachmentMode string              `hcl:"attachment_mode,optional"`
		PerAlloc       bool                `hcl:"per_alloc,optional"`
		Sticky         bool                `hcl:"sticky,optional"`
		MountOptions   []nomadMountOptions `hcl:"mount_options,block"`
	}
	nomadVolumeMount struct {
		Volume          string `hcl:"volume"`
		Destination     string `hcl:"destination"`
		ReadOnly        bool   `hcl:"read_only,optional"`
		PropagationMode string `hcl:"propagation_mode,optional"`
		SELinuxLabel    string `hcl:"selinux_label,optional"`
	}
	nomadVolumeSpec struct {
		ID              string              `hcl:"id"`
		Name            string              `hcl:"name"`
		Type            string              `hcl:"type"`
		PluginID        string              `hcl:"plugin_id"`
		Namespace       string              `hcl:"namespace,optional"`
		ExternalID      string              `hcl:"external_id,optional"`
		SnapshotID      string              `hcl:"snapshot_id,optional"`
		CloneID         string              `hcl:"clone_id,optional"`
		CapacityMin     string              `hcl:"capacity_min,optional"`
		CapacityMax     string              `hcl:"capacity_max,optional"`
		Capabilities    []nomadCapability   `hcl:"capability,block"`
		MountOptions    []nomadMountOptions `hcl:"mount_options,block"`
		Parameters      []nomadFreeForm     `hcl:"parameters,block"`
		Secrets         []nomadFreeForm     `hcl:"secrets,block"`
		Context         []nomadFreeForm     `hcl:"context,block"`
		TopologyRequest []nomadFreeForm     `hcl:"topology_request,block"`
	}
)

// CheckNomadSchema decodes the blocks the checks read (csi_plugin, group
// volume and volume_mount blocks, the volume file) strictly, so a misspelt
// argument such as mount_dirr is an error instead of a silent default.
func CheckNomadSchema(files map[string]*Body, volumeFile string) []error {
	var errs []error
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if n == volumeFile {
			if err := files[n].Decode(new(nomadVolumeSpec)); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		decode := func(typ string, v func() any) {
			for _, b := range files[n].Find(typ) {
				if err := b.Body.Decode(v()); err != nil {
					errs = append(errs, err)
				}
			}
		}
		decode("csi_plugin", func() any { return new(nomadCSIPlugin) })
		decode("volume_mount", func() any { return new(nomadVolumeMount) })
		for _, g := range files[n].Find("group") {
			for _, v := range g.Body.BlocksOf("volume") {
				if err := v.Body.Decode(new(nomadGroupVolume)); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errs
}

// NomadAccessModes are the access modes Nomad knows, with whether the
// plugin serves them for file-system and for block-device attachments.
var NomadAccessModes = map[string][2]bool{
	"single-node-reader-only":  {true, true},
	"single-node-writer":       {true, true},
	"multi-node-reader-only":   {true, true},
	"multi-node-single-writer": {false, true},
	"multi-node-multi-writer":  {false, true},
}

// PluginTask is a task with a csi_plugin block.
type PluginTask struct {
	File   string
	Job    *Block
	Task   *Block
	Plugin *Block
}

// PluginTasks finds the tasks that carry a csi_plugin block.
func PluginTasks(files map[string]*Body) []PluginTask {
	var out []PluginTask
	for _, n := range slices.Sorted(maps.Keys(files)) {
		for _, job := range files[n].BlocksOf("job") {
			for _, task := range job.Body.Find("task") {
				for _, p := range task.Body.BlocksOf("csi_plugin") {
					out = append(out, PluginTask{n, job, task, p})
				}
			}
		}
	}
	return out
}

func taskArgs(t *Block) []string {
	var args []string
	for _, c := range t.Body.BlocksOf("config") {
		if cmd := c.Body.String("command"); cmd != "" {
			args = append(args, cmd)
		}
		args = append(args, c.Body.Strings("args")...)
	}
	return args
}

func taskConfig(t *Block) *Body {
	if c := t.Body.BlocksOf("config"); len(c) > 0 {
		return c[0].Body
	}
	return &Body{Attrs: map[string]any{}}
}

// NomadPluginConfig returns the plugin configuration the task renders
// with a template block at --config, loaded by the plugin's loader.
func NomadPluginConfig(pt PluginTask) (string, *config.Config, error) {
	p, ok := Flag(taskArgs(pt.Task), "config")
	if !ok {
		return "", nil, fmt.Errorf("%s task %s: the plugin has no --config", pt.File, pt.Task.Labels)
	}
	for _, tpl := range pt.Task.Body.BlocksOf("template") {
		dest := tpl.Body.String("destination")
		// The docker driver mounts the task's local/ at /local.
		if "/"+strings.TrimPrefix(path.Clean(dest), "/") != path.Clean(p) {
			continue
		}
		data := tpl.Body.String("data")
		if strings.Contains(data, "{{") {
			return "", nil, fmt.Errorf("%s: the config template uses template actions; this check reads it as plain YAML", pt.File)
		}
		dir, err := os.MkdirTemp("", "deploycheck")
		if err != nil {
			return "", nil, err
		}
		defer os.RemoveAll(dir)
		f := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			return "", nil, err
		}
		cfg, err := LoadConfig(f)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", pt.File, err)
		}
		return data, cfg, nil
	}
	return "", nil, fmt.Errorf("%s task %s: --config=%s, but no template renders it", pt.File, pt.Task.Labels, p)
}

// CheckNomadPlugins: the controller and node files each run the plugin,
// with one plugin id, valid csi_plugin types, --mode and --endpoint that
// match the csi_plugin block, a privileged (or raw_exec) node plugin in a
// system job, the same configuration, and the pool bind-mounted at its
// own path.
func CheckNomadPlugins(files map[string]*Body, controllerFile, nodeFile string) []error {
	var errs []error
	pts := PluginTasks(files)
	ids := map[string]bool{}
	var conf string
	var confFrom string
	byFile := map[string][]PluginTask{}
	for _, pt := range pts {
		byFile[pt.File] = append(byFile[pt.File], pt)
		pb := pt.Plugin.Body
		id := pb.String("id")
		if id == "" {
			errs = append(errs, fmt.Errorf("%s: csi_plugin has no id", pt.File))
		}
		ids[id] = true
		typ := pb.String("type")
		mode := map[string]string{"controller": "controller", "node": "node", "monolith": "all"}[typ]
		if mode == "" {
			errs = append(errs, fmt.Errorf("%s: csi_plugin type %q; Nomad knows controller, node and monolith", pt.File, typ))
		}
		args := taskArgs(pt.Task)
		if got, _ := Flag(args, "mode"); mode != "" && got != mode {
			errs = append(errs, fmt.Errorf("%s: csi_plugin type %s, but the plugin runs with --mode %q (want %s)", pt.File, typ, got, mode))
		}
		md := pb.String("mount_dir")
		if md == "" {
			md = "/csi" // Nomad's default
		}
		ep, _ := Flag(args, "endpoint")
		if want := "unix://" + path.Join(md, "csi.sock"); ep != want {
			errs = append(errs, fmt.Errorf("%s: --endpoint=%q, but Nomad looks for the socket at %s", pt.File, ep, want))
		}
		driver := pt.Task.Body.String("driver")
		if typ == "node" || typ == "monolith" {
			priv, _ := taskConfig(pt.Task).Bool("privileged")
			if !(driver == "raw_exec" || (driver == "docker" && priv)) {
				errs = append(errs, fmt.Errorf("%s: the node plugin runs with driver %q without privileged = true; it cannot attach loop devices or mount", pt.File, driver))
			}
			if jt := pt.Job.Body.String("type"); jt != "system" && jt != "sysbatch" {
				errs = append(errs, fmt.Errorf("%s: the node plugin's job has type %q; it must run on every client (system)", pt.File, jt))
			}
			if id, _ := Flag(args, "node-id"); !strings.Contains(id, "${node.") {
				errs = append(errs, fmt.Errorf("%s: --node-id=%q is not taken from the Nomad node; the docker container's hostname would be used", pt.File, id))
			}
		}
		if driver == "docker" {
			if err := CheckImage(taskConfig(pt.Task).String("image")); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", pt.File, err))
			}
		}
		data, cfg, err := NomadPluginConfig(pt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if confFrom != "" && data != conf {
			errs = append(errs, fmt.Errorf("%s and %s render different plugin configurations", confFrom, pt.File))
		}
		conf, confFrom = data, pt.File
		if driver == "docker" {
			for _, dir := range PoolDirs(cfg) {
				ok := slices.ContainsFunc(taskConfig(pt.Task).BlocksOf("mount"), func(m *Block) bool {
					return m.Body.String("type") == "bind" && path.Clean(m.Body.String("source")) == path.Clean(dir) &&
						path.Clean(m.Body.String("target")) == path.Clean(dir)
				})
				if !ok {
					errs = append(errs, fmt.Errorf("%s: the pool %s is not bind-mounted from the host at the same path", pt.File, dir))
				}
			}
		}
	}
	if len(ids) > 1 {
		errs = append(errs, fmt.Errorf("the plugin jobs use different csi_plugin ids: %v", ids))
	}
	wantTypes := map[string][]string{controllerFile: {"controller", "monolith"}, nodeFile: {"node", "monolith"}}
	for f, types := range wantTypes {
		if len(byFile[f]) != 1 {
			errs = append(errs, fmt.Errorf("%s: want one task with a csi_plugin block, found %d", f, len(byFile[f])))
			continue
		}
		if typ := byFile[f][0].Plugin.Body.String("type"); !slices.Contains(types, typ) {
			errs = append(errs, fmt.Errorf("%s: csi_plugin type %q, want one of %v", f, typ, types))
		}
	}
	return errs
}

// CheckNomadVolume: the volume spec names the plugin, asks for
// capabilities the plugin serves, a filesystem it can make, and
// parameters it accepts; every job's csi volume refers to it with one of
// its capabilities and is mounted by a task.
func CheckNomadVolume(files map[string]*Body, volumeFile string) []error {
	var errs []error
	vol := files[volumeFile]
	if vol == nil {
		return []error{fmt.Errorf("%s is missing", volumeFile)}
	}
	pts := PluginTasks(files)
	if len(pts) == 0 {
		return []error{fmt.Errorf("no plugin job")}
	}
	if got := vol.String("type"); got != "csi" {
		errs = append(errs, fmt.Errorf("%s: type %q, want csi", volumeFile, got))
	}
	if id, want := vol.String("plugin_id"), pts[0].Plugin.Body.String("id"); id != want {
		errs = append(errs, fmt.Errorf("%s: plugin_id %q, but the plugin jobs register %q", volumeFile, id, want))
	}
	volID := vol.String("id")
	if volID == "" {
		errs = append(errs, fmt.Errorf("%s: no id", volumeFile))
	}
	caps := vol.BlocksOf("capability")
	if len(caps) == 0 {
		errs = append(errs, fmt.Errorf("%s: no capability block", volumeFile))
	}
	type pair struct{ access, attach string }
	var offered []pair
	for _, c := range caps {
		a, m := c.Body.String("access_mode"), c.Body.String("attachment_mode")
		ok, known := NomadAccessModes[a]
		idx := map[string]int{"file-system": 0, "block-device": 1}
		i, knownAttach := idx[m]
		switch {
		case !known:
			errs = append(errs, fmt.Errorf("%s: access_mode %q is not a Nomad access mode", volumeFile, a))
		case !knownAttach:
			errs = append(errs, fmt.Errorf("%s: attachment_mode %q, want file-system or block-device", volumeFile, m))
		case !ok[i]:
			errs = append(errs, fmt.Errorf("%s: the plugin does not serve %s with %s", volumeFile, a, m))
		}
		offered = append(offered, pair{a, m})
	}
	fs := ""
	for _, mo := range vol.BlocksOf("mount_options") {
		fs = mo.Body.String("fs_type")
		if fs != "" && !slices.Contains(capability.FSTypes, fs) {
			errs = append(errs, fmt.Errorf("%s: fs_type %q; the plugin makes %v", volumeFile, fs, capability.FSTypes))
		}
	}
	_, cfg, err := NomadPluginConfig(pts[0])
	if err != nil {
		errs = append(errs, err)
	} else {
		p := map[string]string{}
		for _, pb := range vol.BlocksOf("parameters") {
			for k, v := range pb.Body.Attrs {
				s, ok := v.(string)
				if !ok {
					errs = append(errs, fmt.Errorf("%s: parameter %s is not a string", volumeFile, k))
				}
				p[k] = s
			}
		}
		if err := CheckParameters(cfg, p, fs); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", volumeFile, err))
		}
	}
	uses := 0
	for f, b := range files {
		for _, job := range b.BlocksOf("job") {
			for _, g := range job.Body.Find("group") {
				for _, v := range g.Body.BlocksOf("volume") {
					if v.Body.String("type") != "csi" {
						continue
					}
					uses++
					if src := v.Body.String("source"); src != volID {
						errs = append(errs, fmt.Errorf("%s: group volume %v has source %q, but %s creates %q", f, v.Labels, src, volumeFile, volID))
					}
					want := pair{v.Body.String("access_mode"), v.Body.String("attachment_mode")}
					if !slices.Contains(offered, want) {
						errs = append(errs, fmt.Errorf("%s: group volume %v asks for %s/%s, which %s does not offer", f, v.Labels, want.access, want.attach, volumeFile))
					}
					name := ""
					if len(v.Labels) > 0 {
						name = v.Labels[0]
					}
					mounted := slices.ContainsFunc(g.Body.Find("volume_mount"), func(m *Block) bool { return m.Body.String("volume") == name })
					if !mounted {
						errs = append(errs, fmt.Errorf("%s: group volume %s is mounted by no task", f, name))
					}
				}
				for _, m := range g.Body.Find("volume_mount") {
					name := m.Body.String("volume")
					if !slices.ContainsFunc(g.Body.BlocksOf("volume"), func(v *Block) bool { return len(v.Labels) > 0 && v.Labels[0] == name }) {
						errs = append(errs, fmt.Errorf("%s: volume_mount names volume %q, which the group does not declare", f, name))
					}
				}
			}
			for _, t := range job.Body.Find("task") {
				if t.Body.String("driver") == "docker" {
					if err := CheckImage(taskConfig(t).String("image")); err != nil {
						errs = append(errs, fmt.Errorf("%s task %v: %v", f, t.Labels, err))
					}
				}
			}
		}
	}
	if uses == 0 {
		errs = append(errs, fmt.Errorf("no job uses a csi volume"))
	}
	return errs
}
