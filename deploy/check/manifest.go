package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Object is one document of a manifest file, decoded strictly into its
// Kubernetes API type: a misspelt field, a value of the wrong type or a
// key given twice fails the decode.
type Object struct {
	File string // base name, e.g. "node.yaml"
	Doc  int    // 0-based index of the document in the file
	Kind string
	Meta metav1.ObjectMeta
	// Obj is the typed object: *appsv1.Deployment, *corev1.ConfigMap,
	// *VolumeSnapshotClass, *Kustomization, ...
	Obj any
}

// Name returns metadata.name.
func (o Object) Name() string { return o.Meta.Name }

// Namespace returns metadata.namespace.
func (o Object) Namespace() string { return o.Meta.Namespace }

func (o Object) String() string {
	return fmt.Sprintf("%s#%d %s/%s", o.File, o.Doc, o.Kind, o.Name())
}

// VolumeSnapshotClass is the external-snapshotter's type
// (snapshot.storage.k8s.io/v1), which k8s.io/api does not carry; its
// fields are the CRD's.
type VolumeSnapshotClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Driver            string            `json:"driver"`
	DeletionPolicy    string            `json:"deletionPolicy"`
	Parameters        map[string]string `json:"parameters,omitempty"`
}

// Kustomization is the part of kustomize's type
// (kustomize.config.k8s.io/v1beta1) the shipped file may use.
type Kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string            `json:"namespace,omitempty"`
	Resources       []string          `json:"resources,omitempty"`
	CommonLabels    map[string]string `json:"commonLabels,omitempty"`
	Images          []KustomizeImage  `json:"images,omitempty"`
}

// KustomizeImage is one images: entry: containers whose image is Name get
// NewName (default Name) with NewTag.
type KustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
}

// ApplyImages sets container images from the Kustomization's images:
// entries, as `kubectl apply -k` does, so checks see the image a cluster
// pulls: the manifests name the plugin image by a placeholder.
func ApplyImages(objs []Object) {
	set := map[string]string{}
	for _, o := range objs {
		k, ok := o.Obj.(*Kustomization)
		if !ok {
			continue
		}
		for _, e := range k.Images {
			img := e.NewName
			if img == "" {
				img = e.Name
			}
			if e.NewTag != "" {
				img += ":" + e.NewTag
			}
			set[e.Name] = img
		}
	}
	for _, w := range Workloads(objs) {
		for _, c := range Containers(w.Spec) {
			if img, ok := set[c.Image]; ok {
				c.Image = img
			}
		}
	}
}

// newObject returns an empty object of the type apiVersion and kind name,
// or nil for a type this package does not know.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return new(corev1.Namespace)
	case "v1 ServiceAccount":
		return new(corev1.ServiceAccount)
	case "v1 ConfigMap":
		return new(corev1.ConfigMap)
	case "v1 Service":
		return new(corev1.Service)
	case "v1 Pod":
		return new(corev1.Pod)
	case "apps/v1 Deployment":
		return new(appsv1.Deployment)
	case "apps/v1 DaemonSet":
		return new(appsv1.DaemonSet)
	case "apps/v1 StatefulSet":
		return new(appsv1.StatefulSet)
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return new(rbacv1.ClusterRole)
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return new(rbacv1.ClusterRoleBinding)
	case "rbac.authorization.k8s.io/v1 Role":
		return new(rbacv1.Role)
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return new(rbacv1.RoleBinding)
	case "storage.k8s.io/v1 CSIDriver":
		return new(storagev1.CSIDriver)
	case "storage.k8s.io/v1 StorageClass":
		return new(storagev1.StorageClass)
	case "snapshot.storage.k8s.io/v1 VolumeSnapshotClass":
		return new(VolumeSnapshotClass)
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return new(Kustomization)
	}
	return nil
}

// LoadDir reads every *.yaml file of dir.
func LoadDir(dir string) ([]Object, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var out []Object
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		objs, err := ParseYAML(filepath.Base(p), raw)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	ApplyImages(out)
	return out, nil
}

// ParseYAML decodes every document of a multi-document file strictly into
// its API type. Empty documents are skipped.
func ParseYAML(name string, raw []byte) ([]Object, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, i, err)
		}
		if tm.APIVersion == "" || tm.Kind == "" {
			return nil, fmt.Errorf("%s document %d: no apiVersion or kind", name, i)
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			return nil, fmt.Errorf("%s document %d: %s %s is not a type this check knows; add it to newObject", name, i, tm.APIVersion, tm.Kind)
		}
		if err := decodeStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %w", name, i, tm.Kind, err)
		}
		o := Object{File: name, Doc: i, Kind: tm.Kind, Obj: obj}
		if m, ok := obj.(metav1.ObjectMetaAccessor); ok {
			o.Meta = *m.GetObjectMeta().(*metav1.ObjectMeta)
		}
		out = append(out, o)
	}
}

// decodeStrict decodes one YAML document into obj as the API server would
// see it after kubectl: YAML is turned into JSON on its own (a key given
// twice is refused), then decoded refusing unknown fields. yaml.UnmarshalStrict
// is not used because it converts a YAML value to the type of its target,
// so an unquoted true in a StorageClass's parameters would pass here and be
// refused by the API server.
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one value in the document")
	}
	return nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// Workload is an object with a pod template.
type Workload struct {
	Object
	Spec     *corev1.PodSpec
	Labels   map[string]string     // the pod template's
	Selector *metav1.LabelSelector // nil for a bare pod
	Replicas *int32                // Deployments and StatefulSets
	Claims   []corev1.PersistentVolumeClaim
}

// Workloads returns the objects that have pods.
func Workloads(objs []Object) []Workload {
	var out []Workload
	for _, o := range objs {
		switch x := o.Obj.(type) {
		case *appsv1.Deployment:
			out = append(out, Workload{o, &x.Spec.Template.Spec, x.Spec.Template.Labels, x.Spec.Selector, x.Spec.Replicas, nil})
		case *appsv1.DaemonSet:
			out = append(out, Workload{o, &x.Spec.Template.Spec, x.Spec.Template.Labels, x.Spec.Selector, nil, nil})
		case *appsv1.StatefulSet:
			out = append(out, Workload{o, &x.Spec.Template.Spec, x.Spec.Template.Labels, x.Spec.Selector, x.Spec.Replicas, x.Spec.VolumeClaimTemplates})
		case *corev1.Pod:
			out = append(out, Workload{o, &x.Spec, x.Labels, nil, nil, nil})
		}
	}
	return out
}

// Containers returns a pod spec's init and regular containers.
func Containers(spec *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	return out
}

// Container returns the container called name, or nil.
func Container(spec *corev1.PodSpec, name string) *corev1.Container {
	for _, c := range Containers(spec) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Volume returns the pod volume called name, or nil.
func Volume(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// Args returns command followed by args, with $(VAR) references expanded
// from the container's env values; references to unknown variables are left
// as they are, as the kubelet does.
func Args(c *corev1.Container) []string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	all := append(append([]string{}, c.Command...), c.Args...)
	out := make([]string, len(all))
	for i, a := range all {
		out[i] = expandVars(a, env)
	}
	return out
}

func expandVars(s string, env map[string]string) string {
	var sb strings.Builder
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			sb.WriteString(s)
			return sb.String()
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			sb.WriteString(s)
			return sb.String()
		}
		name := s[i+2 : i+j]
		sb.WriteString(s[:i])
		if v, ok := env[name]; ok {
			sb.WriteString(v)
		} else {
			sb.WriteString(s[i : i+j+1])
		}
		s = s[i+j+1:]
	}
}

// VarRefs returns the $(VAR) names used in the given strings.
func VarRefs(args ...string) []string {
	var out []string
	for _, a := range args {
		for {
			i := strings.Index(a, "$(")
			if i < 0 {
				break
			}
			j := strings.IndexByte(a[i:], ')')
			if j < 0 {
				break
			}
			out = append(out, a[i+2:i+j])
			a = a[i+j+1:]
		}
	}
	return out
}

// Flag finds --name=value, -name=value, or --name value (when the next
// argument is not a flag) in args. A bare --name gives "true".
func Flag(args []string, name string) (string, bool) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		f := strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v, true
		}
		if f == name {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				return args[i+1], true
			}
			return "true", true
		}
	}
	return "", false
}

// MountAt returns the container's volumeMount whose mountPath is path.
func MountAt(c *corev1.Container, path string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == filepath.Clean(path) {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// MountOf returns the container's volumeMount of the volume called name.
func MountOf(c *corev1.Container, name string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if m.Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}
