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
		// Shared is set in the volume/csi config, whose pool every agent
		// mounts, and not in the SLRP's agent-local one.
		Shared bool `yaml:"shared"`
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
		if wantShared := filepath.Base(file) == "plugin-config.yaml"; b.Type == "file" && b.Shared != wantShared {
			t.Errorf("%s: file backend %q has shared: %t; want %t (the volume/csi pool is on storage every agent mounts, the SLRP pool is local)", file, b.Name, b.Shared, wantShared)
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
	for _, k := range []Kind{KindCSIPlugin, KindResourceProvider, KindDiskProfiles, KindModules, KindMarathonApp} {
		if d.kinds[k] == 0 {
			t.Errorf("no %s file under deploy/mesos", k)
		}
	}
	// An --agent_features file replaces the agent's defaults; the default
	// list already has RESOURCE_PROVIDER, so none is shipped.
	if n := d.kinds[KindAgentFeatures]; n != 0 {
		t.Errorf("%d --agent_features files shipped: leave the flag unset, the defaults include RESOURCE_PROVIDER and RESIZE_VOLUME", n)
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
				for typ, own := range BackendParameters() {
					if typ != btype && slices.Contains(own, k) && !slices.Contains(BackendParameters()[btype], k) {
						t.Errorf("%s: profile %q: parameter %q belongs to backend type %q and is rejected by %q", rel, name, k, typ, btype)
					}
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

// TestDeployPluginConfigDirs reads each shipped --csi_plugin_config_dir the
// way the agent does: any file that is not a CSIPluginInfo would make it
// exit after registering.
func TestDeployPluginConfigDirs(t *testing.T) {
	root := filepath.Join(harness.RepoRoot(t), "deploy", "mesos")
	for _, dir := range []string{"csi-plugins", "csi-plugins-unmanaged"} {
		if err := CheckPluginConfigDir(filepath.Join(root, dir)); err != nil {
			t.Errorf("deploy/mesos/%s: %v", dir, err)
		}
	}
	// The resource provider directory: the agent skips a file that does
	// not parse, so a stray one silently loses the provider.
	entries, err := os.ReadDir(filepath.Join(root, "resource-providers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(root, "resource-providers", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var rp ResourceProviderInfo
		if err := DecodeStrict(data, &rp); err != nil {
			t.Errorf("deploy/mesos/resource-providers/%s: not a ResourceProviderInfo: %v", e.Name(), err)
		}
	}
}

// TestDeployAgentEnv: the agent flag files add to an agent, never replace
// its flags; each path's file sets its own flags only; and the values
// agree with the files they point at.
func TestDeployAgentEnv(t *testing.T) {
	root := filepath.Join(harness.RepoRoot(t), "deploy", "mesos")
	load := func(name string) map[string]string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		env, err := ParseEnvFile(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return env
	}
	csi, slrp := load("mesos-agent-csi.env"), load("mesos-agent-slrp.env")
	if err := CheckAgentEnv(csi, IsolatorEnv); err != nil {
		t.Errorf("mesos-agent-csi.env: %v", err)
	}
	if err := CheckAgentEnv(slrp, SLRPEnv); err != nil {
		t.Errorf("mesos-agent-slrp.env: %v", err)
	}
	envs, _ := filepath.Glob(filepath.Join(root, "*.env"))
	if len(envs) != 2 {
		t.Errorf("deploy/mesos has %d .env files, want the two additions files", len(envs))
	}

	// The module the adaptor flag names is the one the modules file loads.
	modFile, ok := strings.CutPrefix(slrp["MESOS_MODULES"], "file://")
	if !ok || path.Base(modFile) != "uri_disk_profile.json" {
		t.Fatalf("MESOS_MODULES=%q must be file://.../uri_disk_profile.json", slrp["MESOS_MODULES"])
	}
	data, err := os.ReadFile(filepath.Join(root, "modules", "uri_disk_profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mods Modules
	if err := DecodeStrict(data, &mods); err != nil {
		t.Fatal(err)
	}
	var names []string
	var profileURI string
	for _, l := range mods.Libraries {
		for _, m := range l.Modules {
			names = append(names, m.Name)
			for _, kv := range m.Parameters {
				if kv.Key == "uri" {
					profileURI = kv.Value
				}
			}
		}
	}
	if !slices.Contains(names, slrp["MESOS_DISK_PROFILE_ADAPTOR"]) {
		t.Errorf("MESOS_DISK_PROFILE_ADAPTOR=%s, but modules/uri_disk_profile.json loads %v", slrp["MESOS_DISK_PROFILE_ADAPTOR"], names)
	}

	// The guide installs each file where the flags and the module look.
	doc, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "mesos.md"))
	if err != nil {
		t.Fatal(err)
	}
	for what, p := range map[string]string{
		"MESOS_CSI_PLUGIN_CONFIG_DIR":        csi["MESOS_CSI_PLUGIN_CONFIG_DIR"],
		"MESOS_RESOURCE_PROVIDER_CONFIG_DIR": slrp["MESOS_RESOURCE_PROVIDER_CONFIG_DIR"],
		"MESOS_MODULES":                      modFile,
		"the adaptor's uri":                  profileURI,
	} {
		if p == "" || !strings.Contains(string(doc), "`"+p+"`") && !strings.Contains(string(doc), "("+p+")") {
			t.Errorf("%s is %q, and docs/mesos.md never tells the operator to install anything there", what, p)
		}
	}
}
