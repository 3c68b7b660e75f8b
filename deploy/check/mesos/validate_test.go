package mesos

import (
	"strings"
	"testing"
)

const baseManaged = `{
  "type": "csi.libstorage.io",
  "containers": [{
    "services": ["NODE_SERVICE"],
    "command": {"shell": true, "value": "/usr/local/bin/csi-libstorage --endpoint=$CSI_ENDPOINT --node-id=$MESOS_AGENT_ID --mode=node --config=/etc/csi-libstorage/config.yaml"},
    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}]
  }]
}`

const baseUnmanaged = `{
  "type": "csi.libstorage.io",
  "endpoints": [{"csi_service": "NODE_SERVICE", "endpoint": "unix:///run/csi-libstorage/csi.sock"}],
  "target_path_root": "/var/lib/csi-libstorage/mounts"
}`

const baseSLRP = `{
  "type": "org.apache.mesos.rp.local.storage",
  "name": "libstorage_slrp",
  "default_reservations": [{"type": "DYNAMIC", "role": "storage"}],
  "storage": {
    "plugin": {
      "type": "csi.libstorage.io",
      "name": "libstorage_local",
      "containers": [{
        "services": ["CONTROLLER_SERVICE", "NODE_SERVICE"],
        "command": {"shell": true, "value": "/usr/local/bin/csi-libstorage --endpoint=$CSI_ENDPOINT --config=/etc/csi-libstorage/slrp.yaml"}
      }]
    },
    "reconciliation_interval_seconds": 60
  }
}`

const baseProfiles = `{"profile_matrix": {"fast-xfs": {
  "csi_plugin_type_selector": {"plugin_type": "csi.libstorage.io"},
  "volume_capabilities": {"mount": {"fs_type": "xfs"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}},
  "create_parameters": {"backend": "local", "fsType": "xfs", "preallocate": "true"}}}}`

const baseModules = `{"libraries": [{"file": "/usr/lib/mesos/modules/liburi_disk_profile_adaptor.so",
  "modules": [{"name": "org_apache_mesos_UriDiskProfileAdaptor",
    "parameters": [{"key": "uri", "value": "/etc/mesos/disk-profiles.json"}, {"key": "poll_interval", "value": "60secs"}]}]}]}`

const baseFeatures = `{"capabilities": [{"type": "MULTI_ROLE"}, {"type": "HIERARCHICAL_ROLE"},
  {"type": "RESERVATION_REFINEMENT"}, {"type": "AGENT_OPERATION_FEEDBACK"}, {"type": "RESOURCE_PROVIDER"},
  {"type": "AGENT_DRAINING"}, {"type": "TASK_RESOURCE_LIMITS"}, {"type": "RESIZE_VOLUME"}]}`

const baseWriterApp = `{
  "id": "/db/pg", "instances": 1, "cmd": "postgres", "cpus": 1, "mem": 1024,
  "container": {"type": "MESOS", "volumes": [{
    "containerPath": "data", "mode": "RW",
    "external": {"provider": "csi", "name": "shared/pgdata",
      "options": {"pluginName": "csi.libstorage.io",
        "capability": {"accessType": "mount", "accessMode": "SINGLE_NODE_WRITER", "fsType": "xfs"}}}}]},
  "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
  "unreachableStrategy": "disabled"
}`

const baseReaderApp = `{
  "id": "/web/readers", "instances": 3, "cmd": "nginx", "cpus": 0.1, "mem": 64,
  "container": {"type": "MESOS", "volumes": [{
    "containerPath": "html", "mode": "RO",
    "external": {"provider": "csi", "name": "shared/site",
      "options": {"pluginName": "csi.libstorage.io",
        "capability": {"accessType": "mount", "accessMode": "MULTI_NODE_READER_ONLY"}}}}]}
}`

const baseDVDIApp = `{
  "id": "/legacy/pg", "instances": 1, "cmd": "postgres",
  "container": {"type": "MESOS", "volumes": [{
    "containerPath": "data", "mode": "RW",
    "external": {"provider": "dvdi", "name": "pgdata", "size": 20, "options": {"dvdi/driver": "rexray"}}}]},
  "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}
}`

// mut replaces old by new in base and fails the test if old is not there,
// so that a case can never silently test the unmodified base.
func mut(t *testing.T, base, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("mutation target %q not in base", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestBasesAreValid(t *testing.T) {
	for name, c := range map[string]struct {
		json string
		kind Kind
	}{
		"managed":   {baseManaged, KindCSIPlugin},
		"unmanaged": {baseUnmanaged, KindCSIPlugin},
		"slrp":      {baseSLRP, KindResourceProvider},
		"profiles":  {baseProfiles, KindDiskProfiles},
		"modules":   {baseModules, KindModules},
		"features":  {baseFeatures, KindAgentFeatures},
		"writer":    {baseWriterApp, KindMarathonApp},
		"readers":   {baseReaderApp, KindMarathonApp},
		"dvdi":      {baseDVDIApp, KindMarathonApp},
	} {
		kind, _, err := Load([]byte(c.json))
		if err != nil {
			t.Errorf("%s: valid base rejected: %v", name, err)
		}
		if kind != c.kind {
			t.Errorf("%s: detected %q, want %q", name, kind, c.kind)
		}
	}
}

func TestRejects(t *testing.T) {
	cases := []struct {
		name, json, want string
	}{
		// CSIPluginInfo
		{"hyphen in plugin name", mut(t, baseManaged, `"type": "csi.libstorage.io",`, `"type": "csi.libstorage.io", "name": "lib-storage",`), "no hyphens"},
		{"bad type token", mut(t, baseManaged, `csi.libstorage.io`, `csi..libstorage-io`), "dot-separated"},
		{"containers and endpoints", mut(t, baseManaged, `"containers"`, `"endpoints": [{"csi_service": "NODE_SERVICE", "endpoint": "unix:///x.sock"}], "containers"`), "not both"},
		{"neither containers nor endpoints", `{"type": "csi.libstorage.io", "containers": []}`, "exactly one of containers and endpoints"},
		{"endpoint without unix://", mut(t, baseUnmanaged, `unix:///run/csi-libstorage/csi.sock`, `/run/csi-libstorage/csi.sock`), "unix:///absolute/path"},
		{"tcp endpoint", mut(t, baseUnmanaged, `unix:///run/csi-libstorage/csi.sock`, `tcp://127.0.0.1:9000`), "unix:///absolute/path"},
		{"unmanaged without NODE_SERVICE", mut(t, baseUnmanaged, `"NODE_SERVICE"`, `"CONTROLLER_SERVICE"`), "NODE_SERVICE"},
		{"managed without NODE_SERVICE", mut(t, mut(t, baseManaged, `"NODE_SERVICE"`, `"CONTROLLER_SERVICE"`), `--mode=node`, `--mode=controller`), "serves NODE_SERVICE"},
		{"unknown service", mut(t, baseManaged, `"NODE_SERVICE"`, `"NODE_SERVICE", "IDENTITY_SERVICE"`), "must be CONTROLLER_SERVICE or NODE_SERVICE"},
		{"service in two containers", mut(t, baseManaged, `"containers": [{`, `"containers": [{"services": ["NODE_SERVICE"], "command": {"value": "/usr/local/bin/csi-libstorage --endpoint=$CSI_ENDPOINT --config=/c.yaml"}}, {`), "more than one container"},
		{"unknown field", mut(t, baseUnmanaged, `"target_path_root"`, `"target_path"`), "unknown field"},
		{"target_path_root on managed", mut(t, baseManaged, `"containers"`, `"target_path_root": "/mnt/x", "containers"`), "only for unmanaged"},
		{"reference's --nodeid flag", mut(t, baseManaged, `--node-id=`, `--nodeid=`), "unknown flag --nodeid"},
		{"endpoint not from Mesos", mut(t, baseManaged, `--endpoint=$CSI_ENDPOINT`, `--endpoint=unix:///run/csi.sock`), "$CSI_ENDPOINT"},
		{"endpoint missing", mut(t, baseManaged, `--endpoint=$CSI_ENDPOINT `, ``), "$CSI_ENDPOINT"},
		{"shell false", mut(t, baseManaged, `"shell": true`, `"shell": false`), "shell must be true"},
		{"mode does not cover service", mut(t, baseManaged, `--mode=node`, `--mode=controller`), "does not serve NODE_SERVICE"},
		{"bad mode", mut(t, baseManaged, `--mode=node`, `--mode=both`), "must be controller, node or all"},
		{"no --config", mut(t, baseManaged, ` --config=/etc/csi-libstorage/config.yaml`, ``), "--config"},
		{"hard-coded node id", mut(t, baseManaged, `--node-id=$MESOS_AGENT_ID`, `--node-id=agent1`), "--node-id must be $MESOS_AGENT_ID"},
		{"wrong binary", mut(t, baseManaged, `/usr/local/bin/csi-libstorage`, `/usr/bin/rexray`), "not /usr/local/bin/csi-libstorage"},
		{"scalar missing", mut(t, baseManaged, `, "scalar": {"value": 0.1}`, ``), "scalar.value"},
		{"trailing data", baseManaged + `{}`, "trailing data"},
		// ResourceProviderInfo
		{"hyphen in RP name", mut(t, baseSLRP, `"libstorage_slrp"`, `"libstorage-slrp"`), "no hyphens"},
		{"hyphen in SLRP plugin name", mut(t, baseSLRP, `"libstorage_local"`, `"libstorage-local"`), "no hyphens"},
		{"SLRP plugin name missing", mut(t, baseSLRP, `"name": "libstorage_local",`, ``), "storage.plugin.name"},
		{"SLRP without CONTROLLER_SERVICE", mut(t, baseSLRP, `"CONTROLLER_SERVICE", `, ``), "CONTROLLER_SERVICE is missing"},
		{"SLRP without NODE_SERVICE", mut(t, baseSLRP, `, "NODE_SERVICE"`, ``), "NODE_SERVICE"},
		{"SLRP with endpoints", mut(t, baseSLRP, `"containers": [{`, `"endpoints": [{"csi_service": "NODE_SERVICE", "endpoint": "unix:///x.sock"}], "containers": [{`), "cannot use endpoints"},
		{"SLRP id set", mut(t, baseSLRP, `"name": "libstorage_slrp",`, `"name": "libstorage_slrp", "id": {"value": "x"},`), "id must not be set"},
		{"SLRP wrong type", mut(t, baseSLRP, `org.apache.mesos.rp.local.storage`, `org.apache.mesos.rp.local.disk`), "the agent only runs"},
		{"SLRP unknown field", mut(t, baseSLRP, `"reconciliation_interval_seconds"`, `"reconcile_interval_seconds"`), "unknown field"},
		{"SLRP reservation without role", mut(t, baseSLRP, `"role": "storage"`, `"role": "*"`), "role other than"},
		// DiskProfileMapping
		{"mount and block", mut(t, baseProfiles, `"mount": {"fs_type": "xfs"}`, `"mount": {"fs_type": "xfs"}, "block": {}`), "exactly one of mount and block"},
		{"neither mount nor block", mut(t, baseProfiles, `"mount": {"fs_type": "xfs"}, `, ``), "exactly one of mount and block"},
		{"no selector", mut(t, baseProfiles, `"csi_plugin_type_selector": {"plugin_type": "csi.libstorage.io"},`, ``), "a selector is required"},
		{"two selectors", mut(t, baseProfiles, `"csi_plugin_type_selector"`, `"resource_provider_selector": {"resource_providers": [{"type": "t", "name": "n"}]}, "csi_plugin_type_selector"`), "not both"},
		{"empty plugin_type", mut(t, baseProfiles, `{"plugin_type": "csi.libstorage.io"}`, `{"plugin_type": ""}`), "plugin_type is required"},
		{"RP selector without name", mut(t, baseProfiles, `"csi_plugin_type_selector": {"plugin_type": "csi.libstorage.io"}`, `"resource_provider_selector": {"resource_providers": [{"type": "org.apache.mesos.rp.local.storage"}]}`), "need type and name"},
		{"CSI 1.3 access mode", mut(t, baseProfiles, `SINGLE_NODE_WRITER`, `SINGLE_NODE_SINGLE_WRITER`), "CSI 1.1.0"},
		{"access mode missing", mut(t, baseProfiles, `, "access_mode": {"mode": "SINGLE_NODE_WRITER"}`, ``), "access_mode is required"},
		{"volume_capabilities missing", `{"profile_matrix": {"p": {"csi_plugin_type_selector": {"plugin_type": "csi.libstorage.io"}}}}`, "volume_capabilities is required"},
		{"fsType contradicts fs_type", mut(t, baseProfiles, `"fsType": "xfs"`, `"fsType": "ext4"`), "contradicts"},
		{"overwritefs in profile", mut(t, baseProfiles, `"preallocate": "true"`, `"overwritefs": "true"`), "overwritefs"},
		{"size in profile", mut(t, baseProfiles, `"preallocate": "true"`, `"size": "10"`), "capacity_range"},
		{"unsupported fs", mut(t, mut(t, baseProfiles, `"fs_type": "xfs"`, `"fs_type": "ext3"`), `"fsType": "xfs", `, ``), "formats only"},
		{"singular volume_capability", mut(t, baseProfiles, `"volume_capabilities"`, `"volume_capability"`), "unknown field"},
		{"empty matrix", `{"profile_matrix": {}}`, "profile_matrix is empty"},
		// Modules and agent features
		{"adaptor without uri", mut(t, baseModules, `{"key": "uri", "value": "/etc/mesos/disk-profiles.json"}, `, ``), "needs the parameter uri"},
		{"adaptor unknown parameter", mut(t, baseModules, `"poll_interval"`, `"interval"`), "unknown parameter"},
		{"feature missing", mut(t, baseFeatures, `, {"type": "TASK_RESOURCE_LIMITS"}`, ``), "TASK_RESOURCE_LIMITS is missing"},
		{"default feature turned off", mut(t, baseFeatures, `, {"type": "RESIZE_VOLUME"}`, ``), "RESIZE_VOLUME is missing; the agent enables it by default"},
		// Marathon
		{"RW with reader-only mode", mut(t, baseWriterApp, `SINGLE_NODE_WRITER`, `SINGLE_NODE_READER_ONLY`), "must be mounted RO"},
		{"RW with multi reader-only", mut(t, baseReaderApp, `"mode": "RO"`, `"mode": "RW"`), "must be mounted RO"},
		{"other plugin", mut(t, baseWriterApp, `"pluginName": "csi.libstorage.io"`, `"pluginName": "csi.example.com"`), `must be "csi.libstorage.io"`},
		{"two single writers", mut(t, baseWriterApp, `"instances": 1`, `"instances": 2`), "instances must be <= 1"},
		{"controller container given the agent id", mut(t, mut(t, baseManaged, `"NODE_SERVICE"`, `"CONTROLLER_SERVICE"`), `--mode=node`, `--mode=controller`), "MESOS_AGENT_ID only"},
		{"misspelt attribute field", mut(t, baseSLRP, `"name": "libstorage_slrp",`, `"name": "libstorage_slrp", "attributes": [{"name": "rack", "type": "TEXT", "txt": {"value": "r1"}}],`), "unknown field"},
		{"misspelt volume field", mut(t, baseWriterApp, `"containerPath"`, `"containerpath"`), "unknown field"},
		{"misspelt docker field", mut(t, baseWriterApp, `"type": "MESOS",`, `"type": "MESOS", "docker": {"image": "pg", "forcePull": true},`), "unknown field"},
		{"string reconciliation interval", mut(t, baseSLRP, `"reconciliation_interval_seconds": 60`, `"reconciliation_interval_seconds": "60s"`), "reconciliation_interval_seconds"},
		{"scaled RW multi-node single writer", mut(t, mut(t, baseWriterApp, `SINGLE_NODE_WRITER`, `MULTI_NODE_SINGLE_WRITER`), `"instances": 1`, `"instances": 2`), "MULTI_NODE_SINGLE_WRITER"},
		{"writer without upgradeStrategy", mut(t, baseWriterApp, `"upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},`, ``), "upgradeStrategy"},
		{"writer with over-capacity", mut(t, baseWriterApp, `"maximumOverCapacity": 0`, `"maximumOverCapacity": 1`), "maximumOverCapacity must be 0"},
		{"writer with high health capacity", mut(t, baseWriterApp, `"minimumHealthCapacity": 0`, `"minimumHealthCapacity": 1`), "minimumHealthCapacity must be <= 0.5"},
		{"writer replaced when unreachable", mut(t, baseWriterApp, `"unreachableStrategy": "disabled"`, `"unreachableStrategy": {"inactiveAfterSeconds": 300, "expungeAfterSeconds": 600}`), "unreachableStrategy"},
		{"typo in capability", mut(t, baseWriterApp, `"accessMode"`, `"accesMode"`), "unknown field"},
		{"unknown app field", mut(t, baseWriterApp, `"instances": 1`, `"instance": 1`), "unknown field"},
		{"secrets", mut(t, baseWriterApp, `"pluginName"`, `"nodeStageSecret": {"user": "ref"}, "pluginName"`), "dropped by Mesos"},
		{"docker containerizer", mut(t, baseWriterApp, `"type": "MESOS"`, `"type": "DOCKER"`), "must be MESOS"},
		{"csi with size", mut(t, baseWriterApp, `"name": "shared/pgdata",`, `"name": "shared/pgdata", "size": 10,`), "belong to provider dvdi"},
		{"name not a volume id", mut(t, baseWriterApp, `"shared/pgdata"`, `"pgdata"`), "<backend>/<native-id>"},
		{"bad access type", mut(t, baseWriterApp, `"accessType": "mount"`, `"accessType": "filesystem"`), "mount or block"},
		{"block with fsType", mut(t, baseWriterApp, `"accessType": "mount"`, `"accessType": "block"`), "accessType mount only"},
		{"unknown access mode", mut(t, baseWriterApp, `SINGLE_NODE_WRITER`, `READ_WRITE_ONCE`), "is not one of"},
		{"capability missing", mut(t, baseWriterApp, `,
        "capability": {"accessType": "mount", "accessMode": "SINGLE_NODE_WRITER", "fsType": "xfs"}`, ``), "capability is required"},
		{"unknown provider", mut(t, baseWriterApp, `"provider": "csi"`, `"provider": "rexray"`), "unknown (csi or dvdi)"},
		{"bad mode", mut(t, baseWriterApp, `"mode": "RW"`, `"mode": "rw"`), "must be RW or RO"},
		{"bad app id", mut(t, baseWriterApp, `"/db/pg"`, `"/db/PG_main"`), "not a valid Marathon path segment"},
		{"dvdi read-only", mut(t, baseDVDIApp, `"mode": "RW"`, `"mode": "RO"`), "mode must be RW"},
		{"dvdi without driver", mut(t, baseDVDIApp, `{"dvdi/driver": "rexray"}`, `{"dvdi/newfstype": "xfs"}`), "dvdi/driver is required"},
		{"dvdi over capacity", mut(t, baseDVDIApp, `"maximumOverCapacity": 0`, `"maximumOverCapacity": 0.5`), "maximumOverCapacity must be 0"},
		{"dvdi scaled", mut(t, baseDVDIApp, `"instances": 1`, `"instances": 2`), "instances must be <= 1"},
		// Detection
		{"unrecognized file", `{"apiVersion": "v1", "kind": "PersistentVolume"}`, "unrecognized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Load([]byte(c.json))
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestAccepts(t *testing.T) {
	cases := map[string]string{
		// Both SLRP services covered by two containers.
		"SLRP split containers": mut(t, baseSLRP, `"containers": [{
        "services": ["CONTROLLER_SERVICE", "NODE_SERVICE"],`, `"containers": [{"services": ["CONTROLLER_SERVICE"], "command": {"value": "/usr/local/bin/csi-libstorage --endpoint=$CSI_ENDPOINT --mode=controller --config=/etc/csi-libstorage/slrp.yaml"}}, {
        "services": ["NODE_SERVICE"],`),
		"unmanaged without target_path_root": mut(t, baseUnmanaged, `,
  "target_path_root": "/var/lib/csi-libstorage/mounts"`, ``),
		"quoted env refs":             mut(t, baseManaged, `--endpoint=$CSI_ENDPOINT --node-id=$MESOS_AGENT_ID`, `--endpoint \"${CSI_ENDPOINT}\" --node-id=${MESOS_AGENT_ID}`),
		"multi-writer app scales":     mut(t, mut(t, baseReaderApp, `MULTI_NODE_READER_ONLY`, `MULTI_NODE_MULTI_WRITER`), `"mode": "RO"`, `"mode": "RW"`),
		"RO multi-node single writer": mut(t, mut(t, baseReaderApp, `MULTI_NODE_READER_ONLY`, `MULTI_NODE_SINGLE_WRITER`), `"instances": 3`, `"instances": 2`),
		"block profile":               mut(t, baseProfiles, `"mount": {"fs_type": "xfs"}`, `"block": {}`) + "",
		// Marathon lets a single-writer app scale to zero.
		"writer scaled to zero": mut(t, baseWriterApp, `"instances": 1`, `"instances": 0`),
		// reconciliation_interval_seconds is a double; non-positive turns
		// reconciliation off.
		"fractional reconciliation":   mut(t, baseSLRP, `"reconciliation_interval_seconds": 60`, `"reconciliation_interval_seconds": 2.5`),
		"reconciliation off":          mut(t, baseSLRP, `"reconciliation_interval_seconds": 60`, `"reconciliation_interval_seconds": -1`),
		"SLRP with attributes":        mut(t, baseSLRP, `"name": "libstorage_slrp",`, `"name": "libstorage_slrp", "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}, {"name": "tier", "type": "SCALAR", "scalar": {"value": 2}}],`),
		"every real plugin flag":      mut(t, baseManaged, `--mode=node`, `--mode=node --metrics-address=127.0.0.1:9808 --shutdown-grace=20s --log-level=debug`),
		"resource with a role":        mut(t, baseManaged, `"type": "SCALAR", "scalar"`, `"type": "SCALAR", "role": "storage", "reservations": [{"type": "STATIC", "role": "storage", "labels": {"labels": []}}], "scalar"`),
		"plugin container with image": mut(t, baseManaged, `"resources"`, `"container": {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "csi-libstorage:1", "config": {"type": "INLINE"}}, "cached": true}}, "linux_info": {"share_pid_namespace": false}, "network_infos": [], "hostname": "p"}, "resources"`),
		"app with more Marathon fields": mut(t, mut(t, baseWriterApp, `"type": "MESOS", "volumes": [{`,
			`"type": "MESOS", "linuxInfo": {"seccomp": {"unconfined": true}}, "docker": {"image": "postgres:16", "pullConfig": {"secret": "pull"}, "parameters": [], "privileged": false}, "volumes": [{"containerPath": "/run/secrets/pw", "secret": "pw"}, {`),
			`"cmd": "postgres",`, `"cmd": "postgres", "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300, "dependencies": [], "requirePorts": false, "secrets": {"pw": {"source": "db/pw"}}, "tty": false, "resourceLimits": {"cpus": 2}, "executor": "", "killSelection": "YOUNGEST_FIRST", "readinessChecks": [], "check": {"exec": {"command": {"shell": "true"}}},`),
	}
	// the block profile base still carries fsType: drop it for the accept case
	cases["block profile"] = mut(t, cases["block profile"], `"fsType": "xfs", `, ``)
	for name, js := range cases {
		if _, _, err := Load([]byte(js)); err != nil {
			t.Errorf("%s: rejected: %v", name, err)
		}
	}
}

func TestCheckCreateParameters(t *testing.T) {
	all := map[string]string{}
	for _, k := range AcceptedCreateParameters() {
		all[k] = "x"
	}
	if err := CheckCreateParameters(all); err != nil {
		t.Fatalf("accepted keys rejected: %v", err)
	}
	for _, bad := range []string{"FsType", "dvdi/size", "fstype", "volume_type"} {
		if err := CheckCreateParameters(map[string]string{bad: "x"}); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
}

// TestCheckUniqueCSIVolumes follows Marathon's root-group rule: a name is
// claimed by a SINGLE_NODE_* volume or a RW MULTI_NODE_SINGLE_WRITER mount,
// and only a RO MULTI_NODE_SINGLE_WRITER mount may sit next to a claim.
func TestCheckUniqueCSIVolumes(t *testing.T) {
	app := func(id, mode, access string) *MarathonApp {
		t.Helper()
		js := mut(t, mut(t, mut(t, baseWriterApp, `"/db/pg"`, `"`+id+`"`), `"mode": "RW"`, `"mode": "`+mode+`"`), `SINGLE_NODE_WRITER`, access)
		var a MarathonApp
		if err := DecodeStrict([]byte(js), &a); err != nil {
			t.Fatal(err)
		}
		return &a
	}
	cases := []struct {
		name     string
		a, b     *MarathonApp
		conflict bool
	}{
		{"two single-node writers", app("/a", "RW", SingleNodeWriter), app("/b", "RW", SingleNodeWriter), true},
		{"single-node reader next to a writer", app("/a", "RW", SingleNodeWriter), app("/b", "RO", SingleNodeReaderOnly), true},
		{"two single-node readers", app("/a", "RO", SingleNodeReaderOnly), app("/b", "RO", SingleNodeReaderOnly), true},
		{"two RW multi-node single writers", app("/a", "RW", MultiNodeSingleWriter), app("/b", "RW", MultiNodeSingleWriter), true},
		{"multi-node reader next to a RW single writer", app("/a", "RW", MultiNodeSingleWriter), app("/b", "RO", MultiNodeReaderOnly), true},
		{"multi-node readers", app("/a", "RO", MultiNodeReaderOnly), app("/b", "RO", MultiNodeReaderOnly), false},
		{"RO mounts of a single-writer volume next to its writer", app("/a", "RW", MultiNodeSingleWriter), app("/b", "RO", MultiNodeSingleWriter), false},
		{"RO mounts of a single-writer volume", app("/a", "RO", MultiNodeSingleWriter), app("/b", "RO", MultiNodeSingleWriter), false},
		{"multi writers", app("/a", "RW", MultiNodeMultiWriter), app("/b", "RW", MultiNodeMultiWriter), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, order := range [][]*MarathonApp{{c.a, c.b}, {c.b, c.a}} {
				err := CheckUniqueCSIVolumes(order)
				if c.conflict && (err == nil || !strings.Contains(err.Error(), "shared/pgdata")) {
					t.Errorf("want a conflict on shared/pgdata, got %v", err)
				}
				if !c.conflict && err != nil {
					t.Errorf("want no conflict, got %v", err)
				}
			}
		})
	}
	other := app("/c", "RW", SingleNodeWriter)
	other.Container.Volumes[0].External.Name = "shared/other"
	if err := CheckUniqueCSIVolumes([]*MarathonApp{app("/a", "RW", SingleNodeWriter), other}); err != nil {
		t.Fatalf("distinct volumes rejected: %v", err)
	}
}

func TestParseCommand(t *testing.T) {
	bin, flags, err := ParseCommand(`exec /usr/local/bin/csi-libstorage --endpoint=$CSI_ENDPOINT --mode node --log-level=debug`)
	if err != nil {
		t.Fatal(err)
	}
	if bin != BinaryPath || flags["endpoint"] != "$CSI_ENDPOINT" || flags["mode"] != "node" || flags["log-level"] != "debug" || len(flags) != 3 {
		t.Fatalf("got %q %v", bin, flags)
	}
	if _, _, err := ParseCommand(BinaryPath + " --mode=node --mode=all"); err == nil {
		t.Fatal("duplicate flag accepted")
	}
}
