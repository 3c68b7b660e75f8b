package check

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Object is one YAML document of a manifest file, decoded into generic
// maps.
type Object struct {
	File string // base name, e.g. "node.yaml"
	Doc  int    // 0-based index of the document in the file
	M    map[string]any
}

// Kind returns the object's kind.
func (o Object) Kind() string { return Str(o.M, "kind") }

// Name returns metadata.name.
func (o Object) Name() string { return Str(o.M, "metadata", "name") }

// Namespace returns metadata.namespace.
func (o Object) Namespace() string { return Str(o.M, "metadata", "namespace") }

func (o Object) String() string {
	return fmt.Sprintf("%s#%d %s/%s", o.File, o.Doc, o.Kind(), o.Name())
}

// LoadDir reads every *.yaml file of dir. Empty documents are skipped.
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
	return out, nil
}

// ParseYAML decodes every document of a multi-document file.
func ParseYAML(name string, raw []byte) ([]Object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var out []Object
	for i := 0; ; i++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, i, err)
		}
		if m == nil {
			continue
		}
		out = append(out, Object{File: name, Doc: i, M: m})
	}
}

// Get walks path (map keys, or ints for list indexes) from v.
func Get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k < 0 || k >= len(l) {
				return nil
			}
			v = l[k]
		default:
			return nil
		}
	}
	return v
}

// Str is Get for a string value ("" when absent or not a string).
func Str(v any, path ...any) string {
	s, _ := Get(v, path...).(string)
	return s
}

// Maps is Get for a list of maps.
func Maps(v any, path ...any) []map[string]any {
	l, _ := Get(v, path...).([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Strings is Get for a list of strings; other elements are rendered with
// %v so a mistyped element still shows up.
func Strings(v any, path ...any) []string {
	l, _ := Get(v, path...).([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		} else {
			out = append(out, fmt.Sprint(e))
		}
	}
	return out
}

// PodSpec returns the pod template spec of a workload (Deployment,
// DaemonSet, StatefulSet), or nil.
func PodSpec(o Object) map[string]any {
	switch o.Kind() {
	case "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job":
		m, _ := Get(o.M, "spec", "template", "spec").(map[string]any)
		return m
	case "Pod":
		m, _ := Get(o.M, "spec").(map[string]any)
		return m
	}
	return nil
}

// Containers returns a pod spec's init and regular containers.
func Containers(spec map[string]any) []map[string]any {
	return append(Maps(spec, "initContainers"), Maps(spec, "containers")...)
}

// Container returns the container called name, or nil.
func Container(spec map[string]any, name string) map[string]any {
	for _, c := range Containers(spec) {
		if Str(c, "name") == name {
			return c
		}
	}
	return nil
}

// Volume returns the pod volume called name, or nil.
func Volume(spec map[string]any, name string) map[string]any {
	for _, v := range Maps(spec, "volumes") {
		if Str(v, "name") == name {
			return v
		}
	}
	return nil
}

// Args returns command followed by args, with $(VAR) references expanded
// from the container's env values; references to unknown variables are left
// as they are, as the kubelet does.
func Args(c map[string]any) []string {
	env := map[string]string{}
	for _, e := range Maps(c, "env") {
		if v, ok := e["value"].(string); ok {
			env[Str(e, "name")] = v
		}
	}
	all := append(Strings(c, "command"), Strings(c, "args")...)
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

// VarRefs returns the $(VAR) names used in a container's command and args.
func VarRefs(c map[string]any) []string {
	var out []string
	for _, a := range append(Strings(c, "command"), Strings(c, "args")...) {
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
func MountAt(c map[string]any, path string) map[string]any {
	for _, m := range Maps(c, "volumeMounts") {
		if filepath.Clean(Str(m, "mountPath")) == filepath.Clean(path) {
			return m
		}
	}
	return nil
}

// MountOf returns the container's volumeMount of the volume called name.
func MountOf(c map[string]any, name string) map[string]any {
	for _, m := range Maps(c, "volumeMounts") {
		if Str(m, "name") == name {
			return m
		}
	}
	return nil
}
