// Package config reads the plugin's configuration file (YAML, or JSON,
// which is YAML too). It names the backend instances, in the way libStorage
// named its services, and the operator switches that are not per process
// flags. Unknown keys are errors, so a misspelt option is never ignored.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the whole file.
type Config struct {
	Backends []Entry `yaml:"backends"`
	// AllowOverwrite lets volumes created with overwritefs=true be
	// formatted over an existing filesystem. It is the only way this
	// plugin ever formats a device that holds data.
	AllowOverwrite bool `yaml:"allowOverwrite"`
	// MaxVolumesPerNode is reported to the CO (0: no limit).
	MaxVolumesPerNode int64 `yaml:"maxVolumesPerNode"`
	// AllowedRoots are the directories staging and target paths must lie
	// in once symbolic links in their parents are resolved. Empty: any
	// path, but none through a symbolic link.
	AllowedRoots []string `yaml:"allowedRoots"`
	// SocketGroup owns the plugin socket (a group name or gid), so a CO
	// running as that group can reach it; the socket's mode is 0660.
	SocketGroup string `yaml:"socketGroup"`
	// Filesystems are the filesystem types this deployment's volumes use
	// (default: ext4, the plugin's default). The plugin itself formats
	// whatever a request names; "csictl doctor" checks that the node's
	// kernel and tools support each of these.
	Filesystems []string `yaml:"filesystems"`
}

// Entry is one backend instance. Name and Type are common; the rest is
// decoded by the backend's own type.
type Entry struct {
	Name string
	Type string
	node yaml.Node
}

// UnmarshalYAML keeps the entry's node for the backend to decode later.
func (e *Entry) UnmarshalYAML(n *yaml.Node) error {
	var head struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	}
	if err := n.Decode(&head); err != nil {
		return err
	}
	if head.Name == "" || head.Type == "" {
		return fmt.Errorf("line %d: a backend needs a name and a type", n.Line)
	}
	e.Name, e.Type, e.node = head.Name, head.Type, *n
	return nil
}

// Decode fills v (a backend's config struct, which must also have name and
// type fields) from the entry, refusing keys v does not have.
func (e Entry) Decode(v any) error {
	if e.node.Kind == 0 {
		return nil // built in code, not read from a file
	}
	raw, err := yaml.Marshal(&e.node)
	if err != nil {
		return err
	}
	return strictDecode(raw, v, fmt.Sprintf("backend %q", e.Name))
}

func strictDecode(raw []byte, v any, what string) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := new(Config)
	if err := strictDecode(raw, c, path); err != nil {
		return nil, err
	}
	if len(c.Backends) == 0 {
		return nil, fmt.Errorf("%s: no backends configured", path)
	}
	seen := map[string]bool{}
	for _, b := range c.Backends {
		if seen[b.Name] {
			return nil, fmt.Errorf("%s: backend name %q is used twice", path, b.Name)
		}
		seen[b.Name] = true
	}
	for _, r := range c.AllowedRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r {
			return nil, fmt.Errorf("%s: allowedRoots entry %q must be an absolute, clean path", path, r)
		}
	}
	for _, f := range c.Filesystems {
		if f == "" || strings.ContainsAny(f, "/ \t\n") {
			return nil, fmt.Errorf("%s: filesystems entry %q is not a filesystem type such as ext4", path, f)
		}
	}
	if c.MaxVolumesPerNode < 0 {
		return nil, fmt.Errorf("%s: maxVolumesPerNode cannot be negative", path)
	}
	return c, nil
}

// Default is the configuration used without a file: one file backend
// called "local" in dir.
func Default(dir string) *Config {
	var n yaml.Node
	_ = n.Encode(map[string]string{"name": "local", "type": "file", "dir": dir})
	return &Config{Backends: []Entry{{Name: "local", Type: "file", node: n}}}
}
