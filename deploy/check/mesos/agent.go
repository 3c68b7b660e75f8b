package mesos

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// CheckPluginConfigDir reads dir the way the agent reads
// --csi_plugin_config_dir (Mesos 1.11 src/slave/csi_server.cpp): every entry
// that is not a directory, dot files and editor backups included, must be
// one JSON CSIPluginInfo. The agent skips only directories; a file that is
// not JSON, or not a CSIPluginInfo, or a directory with no plugin at all,
// makes the CSI server fail, and the agent exits right after it registers.
// Each file must also pass our own checks.
func CheckPluginConfigDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("the agent exits when it cannot list --csi_plugin_config_dir: %w", err)
	}
	var p problems
	types := map[string]string{}
	for _, e := range entries {
		full := filepath.Join(dir, e.Name())
		// os::stat::isdir follows symbolic links, as os.Stat does.
		if st, err := os.Stat(full); err == nil && st.IsDir() {
			continue
		}
		data, err := os.ReadFile(full)
		if err != nil {
			// The agent logs and skips a file it cannot read.
			continue
		}
		var c CSIPluginInfo
		if err := DecodeStrict(data, &c); err != nil {
			p.add("%s: not a JSON CSIPluginInfo (%v): the agent exits after registering when any file in --csi_plugin_config_dir does not parse; keep only plugin files there", e.Name(), err)
			continue
		}
		if err := c.Validate(); err != nil {
			p.add("%s: %v", e.Name(), err)
		}
		if other, ok := types[c.Type]; ok {
			p.add("%s and %s both have type %q: the agent loads the first and skips the other", other, e.Name(), c.Type)
		}
		types[c.Type] = e.Name()
	}
	if len(types) == 0 && len(p) == 0 {
		p.add("%s holds no plugin file: the agent exits (\"No valid CSI plugin configurations found\")", dir)
	}
	return p.err()
}

// ParseEnvFile parses a systemd EnvironmentFile: KEY=VALUE lines, blank
// lines and comments (# or ;). Values may be quoted. A key set twice is an
// error, because the second silently wins.
func ParseEnvFile(data []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: %q is not KEY=VALUE", n, line)
		}
		if _, dup := env[k]; dup {
			return nil, fmt.Errorf("line %d: %s is set twice", n, k)
		}
		env[k] = unquote(strings.TrimSpace(v))
	}
	return env, sc.Err()
}

// The agent flags an additions file may set, per path. Everything else an
// agent already has (work_dir, containerizers, isolation, image providers,
// agent features) belongs to the operator: replacing it gives the agent a
// new id (work_dir), changes how every task is isolated, or turns features
// off.
var (
	// IsolatorEnv is what the volume/csi isolator path adds.
	IsolatorEnv = []string{"MESOS_CSI_PLUGIN_CONFIG_DIR"}
	// SLRPEnv is what the storage local resource provider path adds.
	SLRPEnv = []string{"MESOS_RESOURCE_PROVIDER_CONFIG_DIR", "MESOS_MODULES", "MESOS_DISK_PROFILE_ADAPTOR"}
	// ReplacingEnv are agent flags an additions file must never set.
	ReplacingEnv = []string{
		"MESOS_WORK_DIR", "MESOS_CONTAINERIZERS", "MESOS_ISOLATION", "MESOS_IMAGE_PROVIDERS",
		"MESOS_AGENT_FEATURES", "MESOS_MODULES_DIR", "MESOS_HOSTNAME", "MESOS_RESOURCES", "MESOS_ATTRIBUTES",
	}
)

// CheckAgentEnv checks an additions file: it sets exactly the variables of
// allowed, none that replace an agent's existing configuration.
func CheckAgentEnv(env map[string]string, allowed []string) error {
	var p problems
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case slices.Contains(ReplacingEnv, k):
			p.add("%s replaces the agent's own --%s; ship additions only and document the edit instead", k, flagName(k))
		case !slices.Contains(allowed, k):
			p.add("%s does not belong in this file (it may set %s)", k, strings.Join(allowed, ", "))
		case env[k] == "":
			p.add("%s is empty", k)
		}
	}
	for _, k := range allowed {
		if _, ok := env[k]; !ok {
			p.add("%s is not set", k)
		}
	}
	return p.err()
}

// flagName maps MESOS_FOO_BAR to foo_bar, the agent flag it sets.
func flagName(env string) string {
	return strings.ToLower(strings.TrimPrefix(env, "MESOS_"))
}
