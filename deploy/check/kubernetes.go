package check

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/identity"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
)

// PluginContainer is the name of the plugin's container in controller.yaml
// and node.yaml.
const PluginContainer = "csi-libstorage"

// KubeletDir is where the kubelet keeps pods' volumes and the staging
// directories it passes to NodeStage/NodePublish.
const KubeletDir = "/var/lib/kubelet"

// Sidecar image names (the last path element, without tag).
const (
	Provisioner = "csi-provisioner"
	Attacher    = "csi-attacher"
	Snapshotter = "csi-snapshotter"
	Resizer     = "csi-resizer"
	Liveness    = "livenessprobe"
	Registrar   = "csi-node-driver-registrar"
)

// ImageName returns the image's repository base name: "csi-attacher" for
// registry.k8s.io/sig-storage/csi-attacher:v4.8.1.
func ImageName(image string) string {
	s := image
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[:i]
	}
	s = path.Base(s)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Workload is an object with a pod template.
type Workload struct {
	Object
	Spec map[string]any
}

// Workloads returns the objects that have pods.
func Workloads(objs []Object) []Workload {
	var out []Workload
	for _, o := range objs {
		if s := PodSpec(o); s != nil {
			out = append(out, Workload{o, s})
		}
	}
	return out
}

// PluginWorkloads returns the workloads that run the plugin, by kind.
func PluginWorkloads(objs []Object) map[string][]Workload {
	out := map[string][]Workload{}
	for _, w := range Workloads(objs) {
		if Container(w.Spec, PluginContainer) != nil {
			out[w.Kind()] = append(out[w.Kind()], w)
		}
	}
	return out
}

func find(objs []Object, kind, namespace, name string) *Object {
	for i, o := range objs {
		if o.Kind() == kind && o.Name() == name && (namespace == "" || o.Namespace() == namespace) {
			return &objs[i]
		}
	}
	return nil
}

func ofKind(objs []Object, kind string) []Object {
	var out []Object
	for _, o := range objs {
		if o.Kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// clusterScoped lists the kinds shipped here that have no namespace.
var clusterScoped = []string{"Namespace", "CSIDriver", "StorageClass", "VolumeSnapshotClass", "ClusterRole", "ClusterRoleBinding"}

// CheckIdentity: every object has apiVersion, kind and metadata.name;
// namespaced objects name their namespace, cluster-scoped ones do not; no
// object is defined twice.
func CheckIdentity(objs []Object) []error {
	var errs []error
	seen := map[string]string{}
	for _, o := range objs {
		if o.Kind() == "Kustomization" {
			continue
		}
		for _, k := range []string{"apiVersion", "kind"} {
			if Str(o.M, k) == "" {
				errs = append(errs, fmt.Errorf("%s: no %s", o, k))
			}
		}
		if o.Name() == "" {
			errs = append(errs, fmt.Errorf("%s: no metadata.name", o))
		}
		cluster := slices.Contains(clusterScoped, o.Kind())
		if cluster && o.Namespace() != "" {
			errs = append(errs, fmt.Errorf("%s: a %s has no namespace, but metadata.namespace is %q", o, o.Kind(), o.Namespace()))
		}
		if !cluster && o.Namespace() == "" {
			errs = append(errs, fmt.Errorf("%s: no metadata.namespace; it would land in whatever namespace kubectl uses", o))
		}
		key := o.Kind() + "/" + o.Namespace() + "/" + o.Name()
		if prev, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s: also defined in %s", o, prev))
		}
		seen[key] = o.String()
	}
	return errs
}

// CheckDriverNames: the CSIDriver, the StorageClasses and the
// VolumeSnapshotClasses all name the plugin, and the CSIDriver's spec
// matches what the plugin does.
func CheckDriverNames(objs []Object) []error {
	var errs []error
	drivers := ofKind(objs, "CSIDriver")
	if len(drivers) != 1 {
		errs = append(errs, fmt.Errorf("want exactly one CSIDriver, found %d", len(drivers)))
	}
	for _, d := range drivers {
		if d.Name() != identity.PluginName {
			errs = append(errs, fmt.Errorf("%s: the CSIDriver must be named %s, the name the plugin reports", d, identity.PluginName))
		}
		want := map[string]any{"attachRequired": true, "podInfoOnMount": false, "fsGroupPolicy": "File"}
		for k, v := range want {
			if got := Get(d.M, "spec", k); got != v {
				errs = append(errs, fmt.Errorf("%s: spec.%s is %v, want %v", d, k, got, v))
			}
		}
		if m := Strings(d.M, "spec", "volumeLifecycleModes"); !slices.Equal(m, []string{"Persistent"}) {
			errs = append(errs, fmt.Errorf("%s: spec.volumeLifecycleModes is %v, want [Persistent]", d, m))
		}
	}
	scs := ofKind(objs, "StorageClass")
	if len(scs) == 0 {
		errs = append(errs, fmt.Errorf("no StorageClass"))
	}
	for _, sc := range scs {
		if p := Str(sc.M, "provisioner"); p != identity.PluginName {
			errs = append(errs, fmt.Errorf("%s: provisioner %q, want %s", sc, p, identity.PluginName))
		}
	}
	vscs := ofKind(objs, "VolumeSnapshotClass")
	if len(vscs) == 0 {
		errs = append(errs, fmt.Errorf("no VolumeSnapshotClass"))
	}
	for _, c := range vscs {
		if d := Str(c.M, "driver"); d != identity.PluginName {
			errs = append(errs, fmt.Errorf("%s: driver %q, want %s", c, d, identity.PluginName))
		}
		if p := Str(c.M, "deletionPolicy"); p != "Delete" && p != "Retain" {
			errs = append(errs, fmt.Errorf("%s: deletionPolicy %q, want Delete or Retain", c, p))
		}
	}
	return errs
}

// PluginConfig finds the configuration file the plugin containers are
// given (--config, through a ConfigMap volume) and loads it with the
// plugin's own loader. All plugin containers must get the same file.
func PluginConfig(objs []Object) (*config.Config, error) {
	var text string
	var from string
	for _, ws := range PluginWorkloads(objs) {
		for _, w := range ws {
			c := Container(w.Spec, PluginContainer)
			p, ok := Flag(Args(c), "config")
			if !ok {
				return nil, fmt.Errorf("%s: the plugin has no --config; it would run on its built-in pool instead of the shipped configuration", w)
			}
			m := MountAt(c, path.Dir(p))
			if m == nil {
				return nil, fmt.Errorf("%s: --config=%s, but nothing is mounted at %s", w, p, path.Dir(p))
			}
			v := Volume(w.Spec, Str(m, "name"))
			cmName := Str(v, "configMap", "name")
			if cmName == "" {
				return nil, fmt.Errorf("%s: the volume at %s is not a ConfigMap", w, path.Dir(p))
			}
			cm := find(objs, "ConfigMap", w.Namespace(), cmName)
			if cm == nil {
				return nil, fmt.Errorf("%s: ConfigMap %s/%s does not exist", w, w.Namespace(), cmName)
			}
			data, ok := Get(cm.M, "data", path.Base(p)).(string)
			if !ok {
				return nil, fmt.Errorf("%s: ConfigMap %s has no key %s for --config=%s", w, cmName, path.Base(p), p)
			}
			if from != "" && data != text {
				return nil, fmt.Errorf("%s and %s give the plugin different configuration files", from, w)
			}
			text, from = data, w.String()
		}
	}
	if from == "" {
		return nil, fmt.Errorf("no workload runs a container named %s", PluginContainer)
	}
	dir, err := os.MkdirTemp("", "deploycheck")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		return nil, err
	}
	return LoadConfig(f)
}

// LoadConfig loads a plugin configuration file and decodes every backend
// strictly with its own type, as the plugin does at start.
func LoadConfig(f string) (*config.Config, error) {
	cfg, err := config.Load(f)
	if err != nil {
		return nil, err
	}
	for _, b := range cfg.Backends {
		switch b.Type {
		case "file":
			var c file.Config
			if err := b.Decode(&c); err != nil {
				return nil, err
			}
			if c.Dir == "" {
				return nil, fmt.Errorf("file backend %s has no dir", b.Name)
			}
		case "ebs":
			var c ebs.Config
			if err := b.Decode(&c); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("backend %s has type %q, which the plugin does not have", b.Name, b.Type)
		}
	}
	return cfg, nil
}

// PoolDirs returns the pool directories of the configuration's file
// backends.
func PoolDirs(cfg *config.Config) []string {
	var out []string
	for _, b := range cfg.Backends {
		var c file.Config
		if b.Type == "file" && b.Decode(&c) == nil {
			out = append(out, c.Dir)
		}
	}
	return out
}

// BackendKeys returns the CreateVolume parameter keys a backend type adds
// to the common ones.
func BackendKeys(typ string) ([]string, error) {
	switch typ {
	case "file":
		return []string{file.ParamPreallocate}, nil
	case "ebs":
		return slices.Clone(ebs.ParameterKeys), nil
	}
	return nil, fmt.Errorf("unknown backend type %q", typ)
}

// CheckParameters validates a parameter set against the configuration as
// CreateVolume does: the backend it names exists, every key is one that
// backend accepts, values are valid, and fsType agrees with fsFromCO (the
// filesystem the CO asks for, "" if none).
func CheckParameters(cfg *config.Config, p map[string]string, fsFromCO string) error {
	backend := cfg.Backends[0]
	if name, ok := p[params.BackendKey]; ok {
		i := slices.IndexFunc(cfg.Backends, func(e config.Entry) bool { return e.Name == name })
		if i < 0 {
			return fmt.Errorf("backend %q is not in the plugin's configuration", name)
		}
		backend = cfg.Backends[i]
	}
	keys, err := BackendKeys(backend.Type)
	if err != nil {
		return err
	}
	if _, err := params.Check(p, keys, cfg.AllowOverwrite); err != nil {
		return err
	}
	if fs := params.FSType(p); fs != "" && fsFromCO != "" && fs != fsFromCO {
		return fmt.Errorf("fsType %q disagrees with the filesystem the CO asks for, %q", fs, fsFromCO)
	}
	return nil
}

// CheckStorageClasses: every parameter is a string the plugin accepts for
// the backend it names, fsType agrees with csi.storage.k8s.io/fstype, and
// the classes expand and wait for the first consumer.
func CheckStorageClasses(objs []Object) []error {
	cfg, err := PluginConfig(objs)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, sc := range ofKind(objs, "StorageClass") {
		raw, _ := Get(sc.M, "parameters").(map[string]any)
		p := map[string]string{}
		for k, v := range raw {
			s, ok := v.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: parameter %s is %T %v; StorageClass parameters are strings (quote it)", sc, k, v, v))
				continue
			}
			p[k] = s
		}
		if err := CheckParameters(cfg, p, p["csi.storage.k8s.io/fstype"]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", sc, err))
		}
		if Get(sc.M, "allowVolumeExpansion") != true {
			errs = append(errs, fmt.Errorf("%s: allowVolumeExpansion is not true", sc))
		}
		if m := Str(sc.M, "volumeBindingMode"); m != "WaitForFirstConsumer" {
			errs = append(errs, fmt.Errorf("%s: volumeBindingMode %q, want WaitForFirstConsumer", sc, m))
		}
	}
	return errs
}

// CheckPluginModes: one Deployment runs the plugin with --mode controller,
// one DaemonSet with --mode node and a --node-id from the node's name.
func CheckPluginModes(objs []Object) []error {
	var errs []error
	pw := PluginWorkloads(objs)
	want := map[string]string{"Deployment": "controller", "DaemonSet": "node"}
	for kind, mode := range want {
		if len(pw[kind]) != 1 {
			errs = append(errs, fmt.Errorf("want one %s running the plugin, found %d", kind, len(pw[kind])))
			continue
		}
		w := pw[kind][0]
		args := Args(Container(w.Spec, PluginContainer))
		if got, _ := Flag(args, "mode"); got != mode {
			errs = append(errs, fmt.Errorf("%s: the plugin runs with --mode %q, want %q", w, got, mode))
		}
	}
	for kind := range pw {
		if _, ok := want[kind]; !ok {
			errs = append(errs, fmt.Errorf("a %s runs the plugin; only the controller Deployment and the node DaemonSet should", kind))
		}
	}
	for _, w := range pw["Deployment"] {
		if r, ok := Get(w.M, "spec", "replicas").(int); !ok || r != 1 {
			errs = append(errs, fmt.Errorf("%s: spec.replicas is %v, want 1", w, Get(w.M, "spec", "replicas")))
		}
	}
	for _, w := range pw["DaemonSet"] {
		c := Container(w.Spec, PluginContainer)
		id, ok := Flag(Strings(c, "args"), "node-id")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: the node plugin has no --node-id; it would use the pod's hostname, which is not the node name the kubelet reports", w))
			continue
		}
		refs := VarRefs(map[string]any{"args": []any{id}})
		if len(refs) != 1 || envFieldPath(c, refs[0]) != "spec.nodeName" {
			errs = append(errs, fmt.Errorf("%s: --node-id=%s must come from an env variable set from fieldRef spec.nodeName", w, id))
		}
	}
	return errs
}

func envFieldPath(c map[string]any, name string) string {
	for _, e := range Maps(c, "env") {
		if Str(e, "name") == name {
			return Str(e, "valueFrom", "fieldRef", "fieldPath")
		}
	}
	return ""
}

// CheckEnvRefs: every $(VAR) in a command or args is defined in the
// container's env; the kubelet leaves an undefined one as literal text.
func CheckEnvRefs(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		for _, c := range Containers(w.Spec) {
			defined := map[string]bool{}
			for _, e := range Maps(c, "env") {
				defined[Str(e, "name")] = true
			}
			for _, r := range VarRefs(c) {
				if !defined[r] {
					errs = append(errs, fmt.Errorf("%s container %s: $(%s) is not in its env", w, Str(c, "name"), r))
				}
			}
		}
	}
	return errs
}

func hostPathOf(spec map[string]any, m map[string]any) string {
	return path.Clean(Str(Volume(spec, Str(m, "name")), "hostPath", "path"))
}

// CheckNodePrivileges: the node plugin is privileged and sees the kubelet
// directory with Bidirectional propagation at the same path, and the
// host's /dev. Bidirectional mounts are only allowed in privileged
// containers.
func CheckNodePrivileges(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		for _, c := range Containers(w.Spec) {
			for _, m := range Maps(c, "volumeMounts") {
				if Str(m, "mountPropagation") == "Bidirectional" && Get(c, "securityContext", "privileged") != true {
					errs = append(errs, fmt.Errorf("%s container %s: Bidirectional mount %s in a container that is not privileged (the API server refuses it)", w, Str(c, "name"), Str(m, "mountPath")))
				}
			}
		}
	}
	for _, w := range PluginWorkloads(objs)["DaemonSet"] {
		c := Container(w.Spec, PluginContainer)
		if Get(c, "securityContext", "privileged") != true {
			errs = append(errs, fmt.Errorf("%s: the node plugin is not privileged; it cannot attach loop devices or mount", w))
		}
		m := MountAt(c, KubeletDir)
		switch {
		case m == nil:
			errs = append(errs, fmt.Errorf("%s: the node plugin does not mount %s at the same path", w, KubeletDir))
		case hostPathOf(w.Spec, m) != KubeletDir:
			errs = append(errs, fmt.Errorf("%s: %s in the node plugin is not the host's %s", w, KubeletDir, KubeletDir))
		case Str(m, "mountPropagation") != "Bidirectional":
			errs = append(errs, fmt.Errorf("%s: %s is mounted with propagation %q; the plugin's mounts would not reach the kubelet (want Bidirectional)", w, KubeletDir, Str(m, "mountPropagation")))
		}
		if d := MountAt(c, "/dev"); d == nil || hostPathOf(w.Spec, d) != "/dev" {
			errs = append(errs, fmt.Errorf("%s: the node plugin does not see the host's /dev; loop devices it attaches would not appear", w))
		}
	}
	return errs
}

// Endpoint returns the socket path of the plugin's --endpoint.
func Endpoint(c map[string]any) (string, error) {
	e, ok := Flag(Args(c), "endpoint")
	if !ok {
		return "", fmt.Errorf("no --endpoint")
	}
	p, ok := strings.CutPrefix(e, "unix://")
	if !ok || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("--endpoint=%s is not unix:///absolute/path", e)
	}
	return path.Clean(p), nil
}

// CheckSockets: every sidecar's --csi-address is the plugin's socket, seen
// through the same volume at the same path. The controller's socket is in
// an emptyDir; the node's is in the kubelet's plugin directory, and the
// registrar tells the kubelet the host path of that socket.
func CheckSockets(objs []Object) []error {
	var errs []error
	for kind, ws := range PluginWorkloads(objs) {
		for _, w := range ws {
			plugin := Container(w.Spec, PluginContainer)
			sock, err := Endpoint(plugin)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", w, err))
				continue
			}
			pm := MountAt(plugin, path.Dir(sock))
			if pm == nil {
				errs = append(errs, fmt.Errorf("%s: the plugin's socket directory %s is not a volume; no sidecar can reach it", w, path.Dir(sock)))
				continue
			}
			vol := Str(pm, "name")
			sidecars := 0
			for _, c := range Containers(w.Spec) {
				if Str(c, "name") == PluginContainer {
					continue
				}
				addr, ok := Flag(Args(c), "csi-address")
				if !ok {
					errs = append(errs, fmt.Errorf("%s container %s: no --csi-address", w, Str(c, "name")))
					continue
				}
				sidecars++
				addr = strings.TrimPrefix(addr, "unix://")
				if path.Clean(addr) != sock {
					errs = append(errs, fmt.Errorf("%s container %s: --csi-address=%s, but the plugin listens on %s", w, Str(c, "name"), addr, sock))
					continue
				}
				if m := MountAt(c, path.Dir(sock)); m == nil || Str(m, "name") != vol {
					errs = append(errs, fmt.Errorf("%s container %s: %s is not the plugin's volume %s", w, Str(c, "name"), path.Dir(sock), vol))
				}
			}
			if sidecars == 0 {
				errs = append(errs, fmt.Errorf("%s: no sidecar talks to the plugin", w))
			}
			v := Volume(w.Spec, vol)
			switch kind {
			case "Deployment":
				if _, ok := v["emptyDir"]; !ok {
					errs = append(errs, fmt.Errorf("%s: the controller socket volume %s should be an emptyDir", w, vol))
				}
			case "DaemonSet":
				errs = append(errs, checkRegistration(w, sock, v)...)
			}
		}
	}
	return errs
}

func checkRegistration(w Workload, sock string, v map[string]any) []error {
	var errs []error
	host := path.Clean(Str(v, "hostPath", "path"))
	if want := path.Join(KubeletDir, "plugins", identity.PluginName); host != want {
		errs = append(errs, fmt.Errorf("%s: the node socket directory is hostPath %q, want %s", w, host, want))
	}
	var reg map[string]any
	for _, c := range Containers(w.Spec) {
		if ImageName(Str(c, "image")) == Registrar {
			reg = c
		}
	}
	if reg == nil {
		return append(errs, fmt.Errorf("%s: no %s; the kubelet would never learn of the plugin", w, Registrar))
	}
	args := Args(reg)
	if p, _ := Flag(args, "kubelet-registration-path"); path.Clean(p) != path.Join(host, path.Base(sock)) {
		errs = append(errs, fmt.Errorf("%s: --kubelet-registration-path=%s, but the socket is %s on the host", w, p, path.Join(host, path.Base(sock))))
	}
	regDir := "/registration"
	if p, ok := Flag(args, "plugin-registration-path"); ok {
		regDir = p
	}
	m := MountAt(reg, regDir)
	if m == nil || hostPathOf(w.Spec, m) != path.Join(KubeletDir, "plugins_registry") {
		errs = append(errs, fmt.Errorf("%s: %s must mount the host's %s/plugins_registry at %s", w, Registrar, KubeletDir, regDir))
	}
	return errs
}

// CheckPoolMounts: every plugin container mounts each file backend's pool
// from the host at the same path.
func CheckPoolMounts(objs []Object) []error {
	cfg, err := PluginConfig(objs)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, ws := range PluginWorkloads(objs) {
		for _, w := range ws {
			c := Container(w.Spec, PluginContainer)
			for _, dir := range PoolDirs(cfg) {
				m := MountAt(c, dir)
				if m == nil || hostPathOf(w.Spec, m) != path.Clean(dir) {
					errs = append(errs, fmt.Errorf("%s: the plugin does not mount the host's pool %s at %s", w, dir, dir))
				} else if Get(m, "readOnly") == true {
					errs = append(errs, fmt.Errorf("%s: the pool %s is mounted read-only", w, dir))
				}
			}
		}
	}
	return errs
}

// CheckServiceAccounts: each workload names a ServiceAccount that exists
// in its namespace; each binding's subjects and role exist.
func CheckServiceAccounts(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		if w.File != "controller.yaml" && w.File != "node.yaml" {
			continue // examples run as their namespace's default account
		}
		sa := Str(w.Spec, "serviceAccountName")
		if sa == "" {
			errs = append(errs, fmt.Errorf("%s: no serviceAccountName", w))
			continue
		}
		if find(objs, "ServiceAccount", w.Namespace(), sa) == nil {
			errs = append(errs, fmt.Errorf("%s: ServiceAccount %s/%s does not exist", w, w.Namespace(), sa))
		}
	}
	for _, b := range append(ofKind(objs, "ClusterRoleBinding"), ofKind(objs, "RoleBinding")...) {
		for _, s := range Maps(b.M, "subjects") {
			if Str(s, "kind") == "ServiceAccount" && find(objs, "ServiceAccount", Str(s, "namespace"), Str(s, "name")) == nil {
				errs = append(errs, fmt.Errorf("%s: subject ServiceAccount %s/%s does not exist", b, Str(s, "namespace"), Str(s, "name")))
			}
		}
		kind, name := Str(b.M, "roleRef", "kind"), Str(b.M, "roleRef", "name")
		ns := ""
		if kind == "Role" {
			ns = b.Namespace()
		}
		if find(objs, kind, ns, name) == nil {
			errs = append(errs, fmt.Errorf("%s: roleRef %s %s does not exist", b, kind, name))
		}
	}
	return errs
}

// Perm is one permission a sidecar needs.
type Perm struct {
	Group, Resource string
	Verbs           []string
}

// SidecarPerms lists what the sidecars pinned here need, cluster-wide.
var SidecarPerms = map[string][]Perm{
	Provisioner: {
		{"", "persistentvolumes", []string{"get", "list", "watch", "create", "patch", "delete"}},
		{"", "persistentvolumeclaims", []string{"get", "list", "watch", "update"}},
		{"storage.k8s.io", "storageclasses", []string{"get", "list", "watch"}},
		{"", "events", []string{"list", "watch", "create", "update", "patch"}},
		{"snapshot.storage.k8s.io", "volumesnapshots", []string{"get", "list"}},
		{"snapshot.storage.k8s.io", "volumesnapshotcontents", []string{"get", "list"}},
		{"storage.k8s.io", "csinodes", []string{"get", "list", "watch"}},
		{"", "nodes", []string{"get", "list", "watch"}},
		{"storage.k8s.io", "volumeattachments", []string{"get", "list", "watch"}},
	},
	Attacher: {
		{"", "persistentvolumes", []string{"get", "list", "watch", "patch"}},
		{"storage.k8s.io", "csinodes", []string{"get", "list", "watch"}},
		{"storage.k8s.io", "volumeattachments", []string{"get", "list", "watch", "patch"}},
		{"storage.k8s.io", "volumeattachments/status", []string{"patch"}},
	},
	Snapshotter: {
		{"", "events", []string{"list", "watch", "create", "update", "patch"}},
		{"snapshot.storage.k8s.io", "volumesnapshotclasses", []string{"get", "list", "watch"}},
		{"snapshot.storage.k8s.io", "volumesnapshotcontents", []string{"get", "list", "watch", "update", "patch"}},
		{"snapshot.storage.k8s.io", "volumesnapshotcontents/status", []string{"update", "patch"}},
	},
	Resizer: {
		{"", "persistentvolumes", []string{"get", "list", "watch", "patch"}},
		{"", "persistentvolumeclaims", []string{"get", "list", "watch"}},
		{"", "persistentvolumeclaims/status", []string{"patch"}},
		{"", "pods", []string{"get", "list", "watch"}},
		{"", "events", []string{"list", "watch", "create", "update", "patch"}},
	},
}

// LeasePerm is what --leader-election needs in the pod's namespace.
var LeasePerm = Perm{"coordination.k8s.io", "leases", []string{"get", "watch", "list", "delete", "update", "create"}}

func rulesGrant(rules []map[string]any, p Perm) []string {
	var missing []string
	for _, v := range p.Verbs {
		ok := slices.ContainsFunc(rules, func(r map[string]any) bool {
			return slices.Contains(Strings(r, "apiGroups"), p.Group) &&
				slices.Contains(Strings(r, "resources"), p.Resource) &&
				slices.Contains(Strings(r, "verbs"), v)
		})
		if !ok {
			missing = append(missing, v)
		}
	}
	return missing
}

// boundRules returns the rules bound to a service account cluster-wide
// (ClusterRoleBindings) and in namespace ns (RoleBindings).
func boundRules(objs []Object, ns, sa string) (cluster, namespaced []map[string]any) {
	has := func(b Object) bool {
		return slices.ContainsFunc(Maps(b.M, "subjects"), func(s map[string]any) bool {
			return Str(s, "kind") == "ServiceAccount" && Str(s, "name") == sa && Str(s, "namespace") == ns
		})
	}
	for _, b := range ofKind(objs, "ClusterRoleBinding") {
		if has(b) && Str(b.M, "roleRef", "kind") == "ClusterRole" {
			if r := find(objs, "ClusterRole", "", Str(b.M, "roleRef", "name")); r != nil {
				cluster = append(cluster, Maps(r.M, "rules")...)
			}
		}
	}
	for _, b := range ofKind(objs, "RoleBinding") {
		if b.Namespace() != ns || !has(b) {
			continue
		}
		kind := Str(b.M, "roleRef", "kind")
		rns := ns
		if kind == "ClusterRole" {
			rns = ""
		}
		if r := find(objs, kind, rns, Str(b.M, "roleRef", "name")); r != nil {
			namespaced = append(namespaced, Maps(r.M, "rules")...)
		}
	}
	return cluster, namespaced
}

// CheckPermissions: the service account of each sidecar's pod is granted
// what the sidecar needs, leader election included, and no rule uses a
// wildcard.
func CheckPermissions(objs []Object) []error {
	var errs []error
	for _, r := range append(ofKind(objs, "ClusterRole"), ofKind(objs, "Role")...) {
		for _, rule := range Maps(r.M, "rules") {
			for _, k := range []string{"apiGroups", "resources", "verbs"} {
				if slices.Contains(Strings(rule, k), "*") {
					errs = append(errs, fmt.Errorf("%s: a rule grants %s \"*\"", r, k))
				}
			}
		}
	}
	found := map[string]bool{}
	for _, w := range Workloads(objs) {
		sa := Str(w.Spec, "serviceAccountName")
		cluster, namespaced := boundRules(objs, w.Namespace(), sa)
		for _, c := range Containers(w.Spec) {
			name := ImageName(Str(c, "image"))
			perms, ok := SidecarPerms[name]
			if !ok {
				continue
			}
			found[name] = true
			for _, p := range perms {
				if miss := rulesGrant(cluster, p); len(miss) > 0 {
					errs = append(errs, fmt.Errorf("%s: %s (service account %s) lacks %v on %s (group %q) cluster-wide", w, name, sa, miss, p.Resource, p.Group))
				}
			}
			if le, _ := Flag(Args(c), "leader-election"); le == "true" {
				if miss := rulesGrant(append(cluster, namespaced...), LeasePerm); len(miss) > 0 {
					errs = append(errs, fmt.Errorf("%s: %s runs with --leader-election but %s lacks %v on leases in %s", w, name, sa, miss, w.Namespace()))
				}
			}
		}
	}
	for name := range SidecarPerms {
		if !found[name] {
			errs = append(errs, fmt.Errorf("no workload runs %s", name))
		}
	}
	return errs
}

// CheckImage reports what is wrong with an image reference: no tag or
// digest, or the tag latest.
func CheckImage(image string) error {
	if image == "" {
		return fmt.Errorf("no image")
	}
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	last := path.Base(image)
	i := strings.LastIndexByte(last, ':')
	if i < 0 {
		return fmt.Errorf("image %s has no tag (it means :latest)", image)
	}
	if tag := last[i+1:]; tag == "latest" || tag == "" {
		return fmt.Errorf("image %s is not pinned", image)
	}
	return nil
}

// Images returns every image:tag the workloads use.
func Images(objs []Object) []string {
	var out []string
	for _, w := range Workloads(objs) {
		for _, c := range Containers(w.Spec) {
			out = append(out, Str(c, "image"))
		}
	}
	return out
}

// CheckImages: every image is pinned; sidecars come from
// registry.k8s.io/sig-storage; a pod never pulls :latest by policy either.
func CheckImages(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		for _, c := range Containers(w.Spec) {
			img := Str(c, "image")
			if err := CheckImage(img); err != nil {
				errs = append(errs, fmt.Errorf("%s container %s: %v", w, Str(c, "name"), err))
			}
			if Str(c, "name") != PluginContainer && strings.HasPrefix(ImageName(img), "csi-") && !strings.HasPrefix(img, "registry.k8s.io/sig-storage/") {
				errs = append(errs, fmt.Errorf("%s container %s: sidecar image %s is not from registry.k8s.io/sig-storage", w, Str(c, "name"), img))
			}
		}
	}
	return errs
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// CheckPorts: within a pod no two processes listen on one port, and the
// plugin's liveness probe reaches the livenessprobe sidecar.
func CheckPorts(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		listeners := map[int]string{}
		named := map[string]int{}
		listen := func(who, addr string) int {
			p, err := portOf(addr)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s listens on %q: %v", w, who, addr, err))
				return 0
			}
			if prev, dup := listeners[p]; dup {
				errs = append(errs, fmt.Errorf("%s: %s and %s both listen on port %d", w, prev, who, p))
			}
			listeners[p] = who
			return p
		}
		probePort := 0
		for _, c := range Containers(w.Spec) {
			name := Str(c, "name")
			for _, cp := range Maps(c, "ports") {
				n, _ := cp["containerPort"].(int)
				if pn := Str(cp, "name"); pn != "" {
					if _, dup := named[pn]; dup {
						errs = append(errs, fmt.Errorf("%s: port name %s is used twice", w, pn))
					}
					named[pn] = n
				}
			}
			args := Args(c)
			if name == PluginContainer {
				if a, ok := Flag(args, "metrics-address"); ok && a != "" {
					listen(name+" --metrics-address", a)
				}
			}
			if ImageName(Str(c, "image")) == Liveness {
				a, ok := Flag(args, "http-endpoint")
				if !ok {
					a = ":9808" // --health-port's default
				}
				probePort = listen(name+" --http-endpoint", a)
			}
		}
		if _, ok := PluginWorkloads([]Object{w.Object})[w.Kind()]; !ok {
			continue
		}
		plugin := Container(w.Spec, PluginContainer)
		hg, _ := Get(plugin, "livenessProbe", "httpGet").(map[string]any)
		if hg == nil {
			errs = append(errs, fmt.Errorf("%s: the plugin has no httpGet livenessProbe", w))
			continue
		}
		port := 0
		switch p := hg["port"].(type) {
		case int:
			port = p
		case string:
			port = named[p]
		}
		if probePort == 0 || port != probePort || Str(hg, "path") != "/healthz" {
			errs = append(errs, fmt.Errorf("%s: the plugin's livenessProbe asks port %v%s, but the livenessprobe sidecar serves /healthz on %d", w, hg["port"], Str(hg, "path"), probePort))
		}
	}
	return errs
}

// CheckSelectors: each workload's selector matches its pod template.
func CheckSelectors(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		sel, _ := Get(w.M, "spec", "selector", "matchLabels").(map[string]any)
		labels, _ := Get(w.M, "spec", "template", "metadata", "labels").(map[string]any)
		if len(sel) == 0 {
			errs = append(errs, fmt.Errorf("%s: no spec.selector.matchLabels", w))
		}
		for k, v := range sel {
			if labels[k] != v {
				errs = append(errs, fmt.Errorf("%s: selector %s=%v does not match the pod template's labels", w, k, v))
			}
		}
	}
	return errs
}

// CheckClaims: claim templates name StorageClasses that are shipped, and
// their volumes are mounted by some container.
func CheckClaims(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		for _, t := range Maps(w.M, "spec", "volumeClaimTemplates") {
			sc := Str(t, "spec", "storageClassName")
			if find(objs, "StorageClass", "", sc) == nil {
				errs = append(errs, fmt.Errorf("%s: claim template %s uses StorageClass %q, which is not shipped", w, Str(t, "metadata", "name"), sc))
			}
			used := slices.ContainsFunc(Containers(w.Spec), func(c map[string]any) bool {
				return MountOf(c, Str(t, "metadata", "name")) != nil
			})
			if !used {
				errs = append(errs, fmt.Errorf("%s: claim template %s is mounted by no container", w, Str(t, "metadata", "name")))
			}
		}
	}
	return errs
}
