package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends/libstorage"
)

const migrateHelp = `Reads the volumes of one libStorage (REX-Ray) service and prints, for each,
what a task needs to use it through this plugin instead of REX-Ray: the
Marathon app volume (external, provider csi) and the Mesos volume/csi
pre-provisioned volume. The volume id is <backend>/<libStorage id>, where
<backend> is the name of the libstorage backend (or of a native backend
serving the same storage) in the plugin's configuration.

--app reads a Marathon app definition that used the volumes through dvdi:
its dvdi options are mapped (newfstype becomes the capability's fsType, RO
mounts become read-only access modes) and those with no CSI equivalent are
reported as warnings. Without --app the access mode follows the volume's
attachments: attached to several instances means a multi-node mode.

The plugin endpoint is not used.`

// dvdiOptions maps the dvdi option names, without their "dvdi/" prefix,
// to what happens to them under CSI; "" means they carry over.
var dvdiOptions = map[string]string{
	"driver":           "",
	"newfstype":        "",
	"size":             "the volume exists; its size is what libStorage reports, and CreateVolume's capacity range replaces it for new volumes",
	"volumetype":       "creation-time only: it applies to new volumes as the volumetype parameter",
	"iops":             "creation-time only: it applies to new volumes as the iops parameter",
	"availabilityzone": "creation-time only: it applies to new volumes as the availabilityZone parameter",
	"encrypted":        "creation-time only: it applies to new volumes as the encrypted parameter",
	"encryptionkey":    "creation-time only: it applies to new volumes as the encryptionKey parameter",
	"overwritefs":      "no CSI equivalent: the plugin never formats a device that holds data (only a volume created with overwritefs=true, with allowOverwrite set by the operator, is formatted over a foreign filesystem)",
	"preempt":          "no CSI equivalent: a volume never moves away from a node that may be alive; detach it there (or force-detach a dead node with csi-libstorage's admin command) first",
}

func setupMigrate(fs *flag.FlagSet) action {
	host := fs.String("libstorage-host", "", "libStorage server `HOST`: tcp://HOST:PORT, https://HOST:PORT or unix:///PATH (required)")
	service := fs.String("service", "", "libStorage `SERVICE` name (required)")
	backend := fs.String("backend", "", "`NAME` of the backend in the plugin's configuration (required)")
	plugin := fs.String("plugin", "csi.libstorage.io", "CSI plugin `NAME` Mesos and Marathon know the plugin by")
	token := fs.String("token", "", "`FILE` holding the server's bearer token")
	ca := fs.String("tls-ca", "", "CA `FILE` for an https:// host")
	insecure := fs.Bool("tls-insecure", false, "do not verify an https:// host's certificate")
	app := fs.String("app", "", "Marathon app definition `FILE` that used the volumes through dvdi")
	fsType := fs.String("fstype", "ext4", "filesystem `TYPE` of block volumes without a dvdi newfstype (REX-Ray's default is ext4)")
	return func(c *client, args []string) error {
		if *host == "" || *service == "" || *backend == "" {
			return usagef("--libstorage-host, --service and --backend are required")
		}
		cfg := libstorage.Config{Host: *host, Service: *service, Token: *token, Timeout: c.g.timeout.String()}
		if *ca != "" || *insecure {
			cfg.TLS = &libstorage.TLS{CA: *ca, InsecureSkipVerify: *insecure}
		}
		var dvdi map[string]dvdiVolume
		if *app != "" {
			var err error
			if dvdi, err = readDVDIApp(*app); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.g.timeout)
		defer cancel()
		inv, err := libstorage.ReadInventory(ctx, cfg)
		if err != nil {
			return fmt.Errorf("read libStorage service %s at %s: %w", *service, *host, err)
		}
		out := migration{Service: inv.Service, Driver: inv.Driver, Type: inv.Type}
		for _, v := range inv.Volumes {
			out.Volumes = append(out.Volumes, migrateVolume(inv, v, dvdi[v.Name], *backend, *plugin, *fsType))
		}
		if c.g.output == "json" {
			return c.writeJSON(out)
		}
		return printMigration(c, out)
	}
}

type migration struct {
	Service string           `json:"service"`
	Driver  string           `json:"driver"`
	Type    string           `json:"type"`
	Volumes []migratedVolume `json:"volumes"`
}

type migratedVolume struct {
	Name     string         `json:"name"`
	ID       string         `json:"volume_id"`
	Marathon map[string]any `json:"marathon_volume"`
	Mesos    map[string]any `json:"mesos_volume"`
	Warnings []string       `json:"warnings"`
}

// dvdiVolume is one external dvdi volume of a Marathon app.
type dvdiVolume struct {
	ContainerPath string
	Mode          string
	Shared        bool
	Options       map[string]string
}

func readDVDIApp(path string) (map[string]dvdiVolume, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var app struct {
		Container struct {
			Volumes []struct {
				ContainerPath string `json:"containerPath"`
				Mode          string `json:"mode"`
				External      *struct {
					Provider string            `json:"provider"`
					Name     string            `json:"name"`
					Shared   bool              `json:"shared"`
					Size     *int64            `json:"size"`
					Options  map[string]string `json:"options"`
				} `json:"external"`
			} `json:"volumes"`
		} `json:"container"`
	}
	if err := json.Unmarshal(raw, &app); err != nil {
		return nil, fmt.Errorf("--app %s: %w", path, err)
	}
	out := map[string]dvdiVolume{}
	for _, v := range app.Container.Volumes {
		if v.External == nil || v.External.Provider != "dvdi" {
			continue
		}
		d := dvdiVolume{ContainerPath: v.ContainerPath, Mode: v.Mode, Shared: v.External.Shared, Options: map[string]string{}}
		for k, val := range v.External.Options {
			d.Options[strings.TrimPrefix(k, "dvdi/")] = val
		}
		if v.External.Size != nil {
			d.Options["size"] = fmt.Sprint(*v.External.Size)
		}
		out[v.External.Name] = d
	}
	return out, nil
}

// migrateVolume builds the CSI declarations of one libStorage volume.
func migrateVolume(inv *libstorage.Inventory, v libstorage.InventoryVolume, d dvdiVolume, backend, plugin, defaultFS string) migratedVolume {
	m := migratedVolume{Name: v.Name, ID: backend + "/" + v.ID, Warnings: []string{}}
	readOnly := strings.EqualFold(d.Mode, "RO")
	multi := len(v.Instances) > 1 || d.Shared
	mode := "SINGLE_NODE_WRITER"
	switch {
	case multi && inv.Type == libstorage.TypeBlock:
		m.Warnings = append(m.Warnings, fmt.Sprintf("the volume is attached to %d instances (%s) but %s is a block service: only one node can use it under CSI", len(v.Instances), strings.Join(v.Instances, ", "), inv.Driver))
		if readOnly {
			mode = "SINGLE_NODE_READER_ONLY"
		}
	case multi && readOnly:
		mode = "MULTI_NODE_READER_ONLY"
	case multi:
		mode = "MULTI_NODE_MULTI_WRITER"
	case readOnly:
		mode = "SINGLE_NODE_READER_ONLY"
	}
	if len(v.Instances) > 0 {
		m.Warnings = append(m.Warnings, fmt.Sprintf("still attached to %s: stop the tasks and REX-Ray there (docs/migrating-from-rexray.md) before the cut-over", strings.Join(v.Instances, ", ")))
	}
	fsType := ""
	switch inv.Type {
	case libstorage.TypeBlock:
		fsType = defaultFS
		if f := d.Options["newfstype"]; f != "" {
			fsType = f
		}
	case libstorage.TypeNAS:
		fsType = "nfs"
	}
	keys := make([]string, 0, len(d.Options))
	for k := range d.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		why, known := dvdiOptions[k]
		switch {
		case !known:
			m.Warnings = append(m.Warnings, fmt.Sprintf("dvdi/%s=%s: unknown option, not carried over", k, d.Options[k]))
		case k == "driver" && d.Options[k] != "rexray":
			m.Warnings = append(m.Warnings, fmt.Sprintf("dvdi/driver=%s: the volume was not served by rexray; check that %s is the right service", d.Options[k], inv.Service))
		case why != "":
			m.Warnings = append(m.Warnings, fmt.Sprintf("dvdi/%s=%s: %s", k, d.Options[k], why))
		}
	}
	volMode := "RW"
	if readOnly {
		volMode = "RO"
	}
	path := d.ContainerPath
	if path == "" {
		path = "data"
	}
	capJSON := map[string]any{"accessType": "mount", "accessMode": mode}
	mesosCap := map[string]any{"mount": map[string]any{}, "access_mode": map[string]any{"mode": mode}}
	if fsType != "" {
		capJSON["fsType"] = fsType
		mesosCap["mount"] = map[string]any{"fs_type": fsType}
	}
	m.Marathon = map[string]any{
		"containerPath": path,
		"mode":          volMode,
		"external": map[string]any{
			"provider": "csi",
			"name":     m.ID,
			"options":  map[string]any{"pluginName": plugin, "capability": capJSON},
		},
	}
	m.Mesos = map[string]any{
		"container_path": path,
		"mode":           volMode,
		"source": map[string]any{
			"type": "CSI_VOLUME",
			"csi_volume": map[string]any{
				"plugin_name":         plugin,
				"static_provisioning": map[string]any{"volume_id": m.ID, "volume_capability": mesosCap},
			},
		},
	}
	return m
}

func printMigration(c *client, m migration) error {
	fmt.Fprintf(c.out, "libStorage service %s (driver %s, %s): %d volume(s)\n", m.Service, m.Driver, m.Type, len(m.Volumes))
	for _, v := range m.Volumes {
		mar, _ := json.MarshalIndent(v.Marathon, "    ", "  ")
		mes, _ := json.MarshalIndent(v.Mesos, "    ", "  ")
		fmt.Fprintf(c.out, "\n%s → %s\n  Marathon app volume:\n    %s\n  Mesos volume (volume/csi, pre-provisioned):\n    %s\n", v.Name, v.ID, mar, mes)
		for _, w := range v.Warnings {
			fmt.Fprintf(c.out, "  warning: %s\n", w)
		}
	}
	return nil
}
