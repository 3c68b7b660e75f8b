package mesos

import (
	"bytes"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

type pluginConfig struct {
	Backends []struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
		Dir  string `yaml:"dir"`
	} `yaml:"backends"`
}

func loadPluginConfig(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pc pluginConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	types := map[string]string{}
	for _, b := range pc.Backends {
		if b.Name == "" || strings.Contains(b.Name, "/") {
			t.Errorf("%s: backend name %q must be non-empty and contain no slash (it prefixes volume ids)", file, b.Name)
		}
		if _, dup := types[b.Name]; dup {
			t.Errorf("%s: backend %q defined twice", file, b.Name)
		}
		if b.Type == "file" && !path.IsAbs(b.Dir) {
			t.Errorf("%s: file backend %q needs an absolute dir, got %q", file, b.Name, b.Dir)
		}
		types[b.Name] = b.Type
	}
	if len(types) == 0 {
		t.Errorf("%s: no backends", file)
	}
	return types
}

// backendParams are the parameters only one backend type accepts.
var backendParams = map[string][]string{
	"preallocate": {"file"},
	"volumetype":  {"ebs"},
	"iops":        {"ebs"},
}

type deployed struct {
	isolator map[string]*CSIPluginInfo // rel path -> plugin
	slrps    map[string]*ResourceProviderInfo
	profiles map[string]*DiskProfileMapping
	apps     map[string]*MarathonApp
	kinds    map[Kind]int
}

func loadDeploy(t *testing.T) (string, deployed) {
	t.Helper()
	root := filepath.Join(harness.RepoRoot(t), "deploy", "mesos")
	d := deployed{
		isolator: map[string]*CSIPluginInfo{}, slrps: map[string]*ResourceProviderInfo{},
		profiles: map[string]*DiskProfileMapping{}, apps: map[string]*MarathonApp{}, kinds: map[Kind]int{},
	}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		kind, v, err := Load(data)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		d.kinds[kind]++
		switch x := v.(type) {
		case *CSIPluginInfo:
			d.isolator[filepath.ToSlash(rel)] = x
		case *ResourceProviderInfo:
			d.slrps[filepath.ToSlash(rel)] = x
		case *DiskProfileMapping:
			d.profiles[filepath.ToSlash(rel)] = x
		case *MarathonApp:
			d.apps[filepath.ToSlash(rel)] = x
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return root, d
}

func TestDeployFilesDecodeAndValidate(t *testing.T) {
	_, d := loadDeploy(t)
	for _, k := range []Kind{KindCSIPlugin, KindResourceProvider, KindDiskProfiles, KindModules, KindAgentFeatures, KindMarathonApp} {
		if d.kinds[k] == 0 {
			t.Errorf("no %s file under deploy/mesos", k)
		}
	}
	for _, want := range []string{
		"csi-plugins/csi-libstorage-managed.json", "csi-plugins-unmanaged/csi-libstorage-unmanaged.json",
		"resource-providers/libstorage_slrp.json", "disk-profiles.json",
		"marathon/postgres-csi.json", "marathon/readers-csi.json",
	} {
		_, a := d.isolator[want]
		_, b := d.slrps[want]
		_, c := d.profiles[want]
		_, e := d.apps[want]
		if !a && !b && !c && !e {
			t.Errorf("deploy/mesos/%s missing or not decoded", want)
		}
	}
}

func TestDeployPluginFiles(t *testing.T) {
	_, d := loadDeploy(t)
	// Mesos keys plugins by type and skips a second file with the same type,
	// so one config dir must hold at most one file per type.
	byDir := map[string]map[string]string{}
	for rel, p := range d.isolator {
		if p.Type != PluginType {
			t.Errorf("%s: type %q, want %q", rel, p.Type, PluginType)
		}
		dir := path.Dir(rel)
		if byDir[dir] == nil {
			byDir[dir] = map[string]string{}
		}
		if other, ok := byDir[dir][p.Type]; ok {
			t.Errorf("%s and %s share type %q in one config dir: Mesos would skip one", other, rel, p.Type)
		}
		byDir[dir][p.Type] = rel
	}
	if m := d.isolator["csi-plugins/csi-libstorage-managed.json"]; m == nil || len(m.Containers) == 0 {
		t.Error("csi-plugins/csi-libstorage-managed.json must be a managed (containers) plugin")
	}
	if u := d.isolator["csi-plugins-unmanaged/csi-libstorage-unmanaged.json"]; u == nil || len(u.Endpoints) == 0 || u.TargetPathRoot == "" {
		t.Error("csi-plugins-unmanaged/csi-libstorage-unmanaged.json must use endpoints and target_path_root")
	}

	// Every plugin instance gets <work_dir>/csi/<type>/<name>. The managed
	// and unmanaged files are alternatives, but an SLRP runs next to either,
	// so its plugin name must differ from theirs, and it must not use the
	// shared-pool config.
	configs := map[string]string{}
	ident := func(rel string, p *CSIPluginInfo) string {
		for _, c := range p.Containers {
			_, flags, err := ParseCommand(c.Command.Value)
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			configs[rel] = unquote(flags["config"])
		}
		name := p.Name
		if name == "" {
			name = "default"
		}
		return p.Type + "/" + name
	}
	iso := map[string]string{}
	for rel, p := range d.isolator {
		iso[ident(rel, p)] = rel
	}
	for rel, rp := range d.slrps {
		if rp.Storage.Plugin.Type != PluginType {
			t.Errorf("%s: plugin type %q, want %q", rel, rp.Storage.Plugin.Type, PluginType)
		}
		if other, ok := iso[ident(rel, rp.Storage.Plugin)]; ok {
			t.Errorf("%s and %s run the same plugin type and name: their state under <work_dir>/csi collides", rel, other)
		}
	}
	slrpCfg := configs["resource-providers/libstorage_slrp.json"]
	isoCfg := configs["csi-plugins/csi-libstorage-managed.json"]
	if slrpCfg == "" || isoCfg == "" || slrpCfg == isoCfg {
		t.Errorf("the SLRP (%q) and the isolator plugin (%q) need different --config files: the SLRP must not list the shared pool", slrpCfg, isoCfg)
	}
}

func TestDeployProfiles(t *testing.T) {
	root, d := loadDeploy(t)
	slrpBackends := loadPluginConfig(t, filepath.Join(root, "plugin-config-slrp.yaml"))
	rps := map[ResourceProviderRef]bool{}
	for _, rp := range d.slrps {
		rps[ResourceProviderRef{Type: rp.Type, Name: rp.Name}] = true
	}
	total := 0
	for rel, m := range d.profiles {
		for name, p := range m.ProfileMatrix {
			total++
			if s := p.CSIPluginTypeSelector; s != nil && s.PluginType != PluginType {
				t.Errorf("%s: profile %q selects plugin type %q, want %q", rel, name, s.PluginType, PluginType)
			}
			if s := p.ResourceProviderSelector; s != nil {
				for _, r := range s.ResourceProviders {
					if !rps[r] {
						t.Errorf("%s: profile %q selects resource provider %+v, which no shipped SLRP config defines", rel, name, r)
					}
				}
			}
			if err := CheckCreateParameters(p.CreateParameters); err != nil {
				t.Errorf("%s: profile %q: %v", rel, name, err)
			}
			backend, ok := p.CreateParameters["backend"]
			if !ok {
				t.Errorf("%s: profile %q: set create_parameters.backend so the volume lands in the SLRP's pool", rel, name)
				continue
			}
			btype, ok := slrpBackends[backend]
			if !ok {
				t.Errorf("%s: profile %q: backend %q is not in plugin-config-slrp.yaml", rel, name, backend)
			}
			for k := range p.CreateParameters {
				if only, ok := backendParams[k]; ok && !slices.Contains(only, btype) {
					t.Errorf("%s: profile %q: parameter %q is rejected by backend type %q", rel, name, k, btype)
				}
			}
		}
	}
	if total < 2 {
		t.Errorf("want at least two disk profiles, have %d", total)
	}
}

func TestDeployMarathonApps(t *testing.T) {
	root, d := loadDeploy(t)
	backends := loadPluginConfig(t, filepath.Join(root, "plugin-config.yaml"))
	var apps []*MarathonApp
	var sawWriter, sawReaders bool
	for rel, a := range d.apps {
		apps = append(apps, a)
		for _, v := range a.Container.Volumes {
			if v.External == nil || v.External.Provider != "csi" {
				continue
			}
			opts, err := v.External.CSIOptions()
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			if opts.PluginName != PluginType {
				t.Errorf("%s: pluginName %q, want %q", rel, opts.PluginName, PluginType)
			}
			inst, _, _ := strings.Cut(v.External.Name, "/")
			if _, ok := backends[inst]; !ok {
				t.Errorf("%s: volume %q names backend %q, which plugin-config.yaml does not define", rel, v.External.Name, inst)
			}
			mode := opts.Capability.AccessMode
			if v.Mode == "RW" && mode == SingleNodeWriter && a.InstanceCount() == 1 {
				sawWriter = true
			}
			if v.Mode == "RO" && mode == MultiNodeReaderOnly && a.InstanceCount() > 1 {
				sawReaders = true
			}
		}
	}
	if !sawWriter || !sawReaders {
		t.Errorf("want a single-writer app and a multi-reader app (writer %v, readers %v)", sawWriter, sawReaders)
	}
	if err := CheckUniqueCSIVolumes(apps); err != nil {
		t.Error(err)
	}
}
