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

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

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

// PluginWorkloads returns the workloads that run the plugin, by kind.
func PluginWorkloads(objs []Object) map[string][]Workload {
	out := map[string][]Workload{}
	for _, w := range Workloads(objs) {
		if Container(w.Spec, PluginContainer) != nil {
			out[w.Kind] = append(out[w.Kind], w)
		}
	}
	return out
}

func find(objs []Object, kind, namespace, name string) *Object {
	for i, o := range objs {
		if o.Kind == kind && o.Name() == name && (namespace == "" || o.Namespace() == namespace) {
			return &objs[i]
		}
	}
	return nil
}

// ofKind returns the typed objects of type T.
func ofKind[T any](objs []Object) []T {
	var out []T
	for _, o := range objs {
		if x, ok := o.Obj.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// clusterScoped lists the kinds shipped here that have no namespace.
var clusterScoped = []string{"Namespace", "CSIDriver", "StorageClass", "VolumeSnapshotClass", "ClusterRole", "ClusterRoleBinding"}

// CheckIdentity: every object has a metadata.name (the schema lets it be
// empty); namespaced objects name their namespace, cluster-scoped ones do
// not; no object is defined twice.
func CheckIdentity(objs []Object) []error {
	var errs []error
	seen := map[string]string{}
	for _, o := range objs {
		if o.Kind == "Kustomization" {
			continue
		}
		if o.Name() == "" {
			errs = append(errs, fmt.Errorf("%s: no metadata.name", o))
		}
		cluster := slices.Contains(clusterScoped, o.Kind)
		if cluster && o.Namespace() != "" {
			errs = append(errs, fmt.Errorf("%s: a %s has no namespace, but metadata.namespace is %q", o, o.Kind, o.Namespace()))
		}
		if !cluster && o.Namespace() == "" {
			errs = append(errs, fmt.Errorf("%s: no metadata.namespace; it would land in whatever namespace kubectl uses", o))
		}
		key := o.Kind + "/" + o.Namespace() + "/" + o.Name()
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
	drivers := ofKind[*storagev1.CSIDriver](objs)
	if len(drivers) != 1 {
		errs = append(errs, fmt.Errorf("want exactly one CSIDriver, found %d", len(drivers)))
	}
	for _, d := range drivers {
		where := "CSIDriver " + d.Name
		if d.Name != identity.PluginName {
			errs = append(errs, fmt.Errorf("%s: the CSIDriver must be named %s, the name the plugin reports", where, identity.PluginName))
		}
		if v := d.Spec.AttachRequired; v == nil || !*v {
			errs = append(errs, fmt.Errorf("%s: spec.attachRequired is %v, want true", where, show(v)))
		}
		if v := d.Spec.PodInfoOnMount; v == nil || *v {
			errs = append(errs, fmt.Errorf("%s: spec.podInfoOnMount is %v, want false", where, show(v)))
		}
		if v := d.Spec.FSGroupPolicy; v == nil || *v != storagev1.FileFSGroupPolicy {
			errs = append(errs, fmt.Errorf("%s: spec.fsGroupPolicy is %v, want File", where, show(v)))
		}
		if m := d.Spec.VolumeLifecycleModes; !slices.Equal(m, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}) {
			errs = append(errs, fmt.Errorf("%s: spec.volumeLifecycleModes is %v, want [Persistent]", where, m))
		}
	}
	scs := ofKind[*storagev1.StorageClass](objs)
	if len(scs) == 0 {
		errs = append(errs, fmt.Errorf("no StorageClass"))
	}
	for _, sc := range scs {
		if sc.Provisioner != identity.PluginName {
			errs = append(errs, fmt.Errorf("StorageClass %s: provisioner %q, want %s", sc.Name, sc.Provisioner, identity.PluginName))
		}
	}
	vscs := ofKind[*VolumeSnapshotClass](objs)
	if len(vscs) == 0 {
		errs = append(errs, fmt.Errorf("no VolumeSnapshotClass"))
	}
	for _, c := range vscs {
		if c.Driver != identity.PluginName {
			errs = append(errs, fmt.Errorf("VolumeSnapshotClass %s: driver %q, want %s", c.Name, c.Driver, identity.PluginName))
		}
		if p := c.DeletionPolicy; p != "Delete" && p != "Retain" {
			errs = append(errs, fmt.Errorf("VolumeSnapshotClass %s: deletionPolicy %q, want Delete or Retain", c.Name, p))
		}
	}
	return errs
}

// show renders an optional field: its value, or <unset>.
func show[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
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
			v := Volume(w.Spec, m.Name)
			if v == nil || v.ConfigMap == nil {
				return nil, fmt.Errorf("%s: the volume at %s is not a ConfigMap", w, path.Dir(p))
			}
			cmName := v.ConfigMap.Name
			o := find(objs, "ConfigMap", w.Namespace(), cmName)
			if o == nil {
				return nil, fmt.Errorf("%s: ConfigMap %s/%s does not exist", w, w.Namespace(), cmName)
			}
			data, ok := o.Obj.(*corev1.ConfigMap).Data[path.Base(p)]
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

// CheckStorageClasses: every parameter is one the plugin accepts for the
// backend it names, fsType agrees with csi.storage.k8s.io/fstype, and the
// classes expand and wait for the first consumer. (That parameters are
// strings is the schema's to say.)
func CheckStorageClasses(objs []Object) []error {
	cfg, err := PluginConfig(objs)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, sc := range ofKind[*storagev1.StorageClass](objs) {
		where := "StorageClass " + sc.Name
		if err := CheckParameters(cfg, sc.Parameters, sc.Parameters["csi.storage.k8s.io/fstype"]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", where, err))
		}
		if v := sc.AllowVolumeExpansion; v == nil || !*v {
			errs = append(errs, fmt.Errorf("%s: allowVolumeExpansion is not true", where))
		}
		if m := sc.VolumeBindingMode; m == nil || *m != storagev1.VolumeBindingWaitForFirstConsumer {
			errs = append(errs, fmt.Errorf("%s: volumeBindingMode %v, want WaitForFirstConsumer", where, show(m)))
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
		if r := w.Replicas; r == nil || *r != 1 {
			errs = append(errs, fmt.Errorf("%s: spec.replicas is %v, want 1", w, show(r)))
		}
	}
	for _, w := range pw["DaemonSet"] {
		c := Container(w.Spec, PluginContainer)
		id, ok := Flag(c.Args, "node-id")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: the node plugin has no --node-id; it would use the pod's hostname, which is not the node name the kubelet reports", w))
			continue
		}
		refs := VarRefs(id)
		if len(refs) != 1 || envFieldPath(c, refs[0]) != "spec.nodeName" {
			errs = append(errs, fmt.Errorf("%s: --node-id=%s must come from an env variable set from fieldRef spec.nodeName", w, id))
		}
	}
	return errs
}

func envFieldPath(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
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
			for _, e := range c.Env {
				defined[e.Name] = true
			}
			for _, r := range VarRefs(append(append([]string{}, c.Command...), c.Args...)...) {
				if !defined[r] {
					errs = append(errs, fmt.Errorf("%s container %s: $(%s) is not in its env", w, c.Name, r))
				}
			}
		}
	}
	return errs
}

func hostPathOf(spec *corev1.PodSpec, m *corev1.VolumeMount) string {
	v := Volume(spec, m.Name)
	if v == nil || v.HostPath == nil {
		return ""
	}
	return path.Clean(v.HostPath.Path)
}

func privileged(c *corev1.Container) bool {
	return c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
}

func propagation(m *corev1.VolumeMount) string {
	if m.MountPropagation == nil {
		return ""
	}
	return string(*m.MountPropagation)
}

// CheckNodePrivileges: the node plugin is privileged and sees the kubelet
// directory with Bidirectional propagation at the same path, and the
// host's /dev. Bidirectional mounts are only allowed in privileged
// containers.
func CheckNodePrivileges(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		for _, c := range Containers(w.Spec) {
			for _, m := range c.VolumeMounts {
				if propagation(&m) == string(corev1.MountPropagationBidirectional) && !privileged(c) {
					errs = append(errs, fmt.Errorf("%s container %s: Bidirectional mount %s in a container that is not privileged (the API server refuses it)", w, c.Name, m.MountPath))
				}
			}
		}
	}
	for _, w := range PluginWorkloads(objs)["DaemonSet"] {
		c := Container(w.Spec, PluginContainer)
		if !privileged(c) {
			errs = append(errs, fmt.Errorf("%s: the node plugin is not privileged; it cannot attach loop devices or mount", w))
		}
		m := MountAt(c, KubeletDir)
		switch {
		case m == nil:
			errs = append(errs, fmt.Errorf("%s: the node plugin does not mount %s at the same path", w, KubeletDir))
		case hostPathOf(w.Spec, m) != KubeletDir:
			errs = append(errs, fmt.Errorf("%s: %s in the node plugin is not the host's %s", w, KubeletDir, KubeletDir))
		case propagation(m) != string(corev1.MountPropagationBidirectional):
			errs = append(errs, fmt.Errorf("%s: %s is mounted with propagation %q; the plugin's mounts would not reach the kubelet (want Bidirectional)", w, KubeletDir, propagation(m)))
		}
		if d := MountAt(c, "/dev"); d == nil || hostPathOf(w.Spec, d) != "/dev" {
			errs = append(errs, fmt.Errorf("%s: the node plugin does not see the host's /dev; loop devices it attaches would not appear", w))
		}
	}
	return errs
}

// Endpoint returns the socket path of the plugin's --endpoint.
func Endpoint(c *corev1.Container) (string, error) {
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
			vol := pm.Name
			sidecars := 0
			for _, c := range Containers(w.Spec) {
				if c.Name == PluginContainer {
					continue
				}
				addr, ok := Flag(Args(c), "csi-address")
				if !ok {
					errs = append(errs, fmt.Errorf("%s container %s: no --csi-address", w, c.Name))
					continue
				}
				sidecars++
				addr = strings.TrimPrefix(addr, "unix://")
				if path.Clean(addr) != sock {
					errs = append(errs, fmt.Errorf("%s container %s: --csi-address=%s, but the plugin listens on %s", w, c.Name, addr, sock))
					continue
				}
				if m := MountAt(c, path.Dir(sock)); m == nil || m.Name != vol {
					errs = append(errs, fmt.Errorf("%s container %s: %s is not the plugin's volume %s", w, c.Name, path.Dir(sock), vol))
				}
			}
			if sidecars == 0 {
				errs = append(errs, fmt.Errorf("%s: no sidecar talks to the plugin", w))
			}
			v := Volume(w.Spec, vol)
			switch kind {
			case "Deployment":
				if v == nil || v.EmptyDir == nil {
					errs = append(errs, fmt.Errorf("%s: the controller socket volume %s should be an emptyDir", w, vol))
				}
			case "DaemonSet":
				errs = append(errs, checkRegistration(w, sock, v)...)
			}
		}
	}
	return errs
}

func checkRegistration(w Workload, sock string, v *corev1.Volume) []error {
	var errs []error
	host := ""
	if v != nil && v.HostPath != nil {
		host = path.Clean(v.HostPath.Path)
	}
	if want := path.Join(KubeletDir, "plugins", identity.PluginName); host != want {
		errs = append(errs, fmt.Errorf("%s: the node socket directory is hostPath %q, want %s", w, host, want))
	}
	var reg *corev1.Container
	for _, c := range Containers(w.Spec) {
		if ImageName(c.Image) == Registrar {
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
				} else if m.ReadOnly {
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
		sa := w.Spec.ServiceAccountName
		if sa == "" {
			errs = append(errs, fmt.Errorf("%s: no serviceAccountName", w))
			continue
		}
		if find(objs, "ServiceAccount", w.Namespace(), sa) == nil {
			errs = append(errs, fmt.Errorf("%s: ServiceAccount %s/%s does not exist", w, w.Namespace(), sa))
		}
	}
	check := func(where string, ns string, subjects []rbacv1.Subject, ref rbacv1.RoleRef) {
		for _, s := range subjects {
			if s.Kind == "ServiceAccount" && find(objs, "ServiceAccount", s.Namespace, s.Name) == nil {
				errs = append(errs, fmt.Errorf("%s: subject ServiceAccount %s/%s does not exist", where, s.Namespace, s.Name))
			}
		}
		if ref.Kind != "Role" {
			ns = ""
		}
		if find(objs, ref.Kind, ns, ref.Name) == nil {
			errs = append(errs, fmt.Errorf("%s: roleRef %s %s does not exist", where, ref.Kind, ref.Name))
		}
	}
	for _, b := range ofKind[*rbacv1.ClusterRoleBinding](objs) {
		check("ClusterRoleBinding "+b.Name, "", b.Subjects, b.RoleRef)
	}
	for _, b := range ofKind[*rbacv1.RoleBinding](objs) {
		check("RoleBinding "+b.Namespace+"/"+b.Name, b.Namespace, b.Subjects, b.RoleRef)
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

func rulesGrant(rules []rbacv1.PolicyRule, p Perm) []string {
	var missing []string
	for _, v := range p.Verbs {
		ok := slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, p.Group) && slices.Contains(r.Resources, p.Resource) && slices.Contains(r.Verbs, v)
		})
		if !ok {
			missing = append(missing, v)
		}
	}
	return missing
}

// boundRules returns the rules bound to a service account cluster-wide
// (ClusterRoleBindings) and in namespace ns (RoleBindings).
func boundRules(objs []Object, ns, sa string) (cluster, namespaced []rbacv1.PolicyRule) {
	has := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == ns
		})
	}
	rules := func(kind, ns, name string) []rbacv1.PolicyRule {
		o := find(objs, kind, ns, name)
		switch r := objOf(o).(type) {
		case *rbacv1.ClusterRole:
			return r.Rules
		case *rbacv1.Role:
			return r.Rules
		}
		return nil
	}
	for _, b := range ofKind[*rbacv1.ClusterRoleBinding](objs) {
		if has(b.Subjects) && b.RoleRef.Kind == "ClusterRole" {
			cluster = append(cluster, rules("ClusterRole", "", b.RoleRef.Name)...)
		}
	}
	for _, b := range ofKind[*rbacv1.RoleBinding](objs) {
		if b.Namespace != ns || !has(b.Subjects) {
			continue
		}
		rns := ns
		if b.RoleRef.Kind == "ClusterRole" {
			rns = ""
		}
		namespaced = append(namespaced, rules(b.RoleRef.Kind, rns, b.RoleRef.Name)...)
	}
	return cluster, namespaced
}

func objOf(o *Object) any {
	if o == nil {
		return nil
	}
	return o.Obj
}

// CheckPermissions: the service account of each sidecar's pod is granted
// what the sidecar needs, leader election included, and no rule uses a
// wildcard.
func CheckPermissions(objs []Object) []error {
	var errs []error
	wild := func(where string, rules []rbacv1.PolicyRule) {
		for _, rule := range rules {
			for k, l := range map[string][]string{"apiGroups": rule.APIGroups, "resources": rule.Resources, "verbs": rule.Verbs} {
				if slices.Contains(l, "*") {
					errs = append(errs, fmt.Errorf("%s: a rule grants %s \"*\"", where, k))
				}
			}
		}
	}
	for _, r := range ofKind[*rbacv1.ClusterRole](objs) {
		wild("ClusterRole "+r.Name, r.Rules)
	}
	for _, r := range ofKind[*rbacv1.Role](objs) {
		wild("Role "+r.Namespace+"/"+r.Name, r.Rules)
	}
	found := map[string]bool{}
	for _, w := range Workloads(objs) {
		sa := w.Spec.ServiceAccountName
		cluster, namespaced := boundRules(objs, w.Namespace(), sa)
		for _, c := range Containers(w.Spec) {
			name := ImageName(c.Image)
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
			out = append(out, c.Image)
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
			if err := CheckImage(c.Image); err != nil {
				errs = append(errs, fmt.Errorf("%s container %s: %v", w, c.Name, err))
			}
			if c.Name != PluginContainer && strings.HasPrefix(ImageName(c.Image), "csi-") && !strings.HasPrefix(c.Image, "registry.k8s.io/sig-storage/") {
				errs = append(errs, fmt.Errorf("%s container %s: sidecar image %s is not from registry.k8s.io/sig-storage", w, c.Name, c.Image))
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
			for _, cp := range c.Ports {
				if cp.Name != "" {
					if _, dup := named[cp.Name]; dup {
						errs = append(errs, fmt.Errorf("%s: port name %s is used twice", w, cp.Name))
					}
					named[cp.Name] = int(cp.ContainerPort)
				}
			}
			args := Args(c)
			if c.Name == PluginContainer {
				if a, ok := Flag(args, "metrics-address"); ok && a != "" {
					listen(c.Name+" --metrics-address", a)
				}
			}
			if ImageName(c.Image) == Liveness {
				a, ok := Flag(args, "http-endpoint")
				if !ok {
					a = ":9808" // --health-port's default
				}
				probePort = listen(c.Name+" --http-endpoint", a)
			}
		}
		plugin := Container(w.Spec, PluginContainer)
		if plugin == nil {
			continue
		}
		if plugin.LivenessProbe == nil || plugin.LivenessProbe.HTTPGet == nil {
			errs = append(errs, fmt.Errorf("%s: the plugin has no httpGet livenessProbe", w))
			continue
		}
		hg := plugin.LivenessProbe.HTTPGet
		port := int(hg.Port.IntVal)
		if hg.Port.Type == intstr.String {
			port = named[hg.Port.StrVal]
		}
		if probePort == 0 || port != probePort || hg.Path != "/healthz" {
			errs = append(errs, fmt.Errorf("%s: the plugin's livenessProbe asks port %s%s, but the livenessprobe sidecar serves /healthz on %d", w, hg.Port.String(), hg.Path, probePort))
		}
	}
	return errs
}

// CheckSelectors: each workload's selector matches its pod template.
func CheckSelectors(objs []Object) []error {
	var errs []error
	for _, w := range Workloads(objs) {
		if w.Kind == "Pod" {
			continue
		}
		if w.Selector == nil || len(w.Selector.MatchLabels) == 0 {
			errs = append(errs, fmt.Errorf("%s: no spec.selector.matchLabels", w))
			continue
		}
		for k, v := range w.Selector.MatchLabels {
			if w.Labels[k] != v {
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
		for _, t := range w.Claims {
			sc := show(t.Spec.StorageClassName)
			if find(objs, "StorageClass", "", sc) == nil {
				errs = append(errs, fmt.Errorf("%s: claim template %s uses StorageClass %q, which is not shipped", w, t.Name, sc))
			}
			used := slices.ContainsFunc(Containers(w.Spec), func(c *corev1.Container) bool {
				return MountOf(c, t.Name) != nil
			})
			if !used {
				errs = append(errs, fmt.Errorf("%s: claim template %s is mounted by no container", w, t.Name))
			}
		}
	}
	return errs
}
