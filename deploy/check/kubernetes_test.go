package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type k8sCheck struct {
	name string
	fn   func([]Object) []error
}

var k8sChecks = []k8sCheck{
	{"Identity", CheckIdentity},
	{"DriverNames", CheckDriverNames},
	{"StorageClasses", CheckStorageClasses},
	{"PluginModes", CheckPluginModes},
	{"EnvRefs", CheckEnvRefs},
	{"NodePrivileges", CheckNodePrivileges},
	{"Sockets", CheckSockets},
	{"PoolMounts", CheckPoolMounts},
	{"ServiceAccounts", CheckServiceAccounts},
	{"Permissions", CheckPermissions},
	{"Images", CheckImages},
	{"Ports", CheckPorts},
	{"Selectors", CheckSelectors},
	{"Claims", CheckClaims},
}

func checkByName(name string) func([]Object) []error {
	for _, c := range k8sChecks {
		if c.name == name {
			return c.fn
		}
	}
	panic("no check " + name)
}

// TestKubernetesParse: every file is YAML, every document an object, and
// each kind the deployment needs is there.
func TestKubernetesParse(t *testing.T) {
	files := readDir(t, k8sDir(t), ".yaml")
	for name, text := range files {
		objs, err := ParseYAML(name, []byte(text))
		if err != nil {
			t.Error(err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s holds no object", name)
		}
	}
	objs := parseK8s(t, files)
	count := map[string]int{}
	for _, o := range objs {
		count[o.Kind]++
	}
	for kind, min := range map[string]int{
		"Namespace": 1, "CSIDriver": 1, "ServiceAccount": 2, "ClusterRole": 4, "ClusterRoleBinding": 4,
		"Role": 1, "RoleBinding": 1, "ConfigMap": 1, "Deployment": 1, "DaemonSet": 1,
		"StorageClass": 2, "VolumeSnapshotClass": 1, "StatefulSet": 1, "Kustomization": 1,
	} {
		if count[kind] < min {
			t.Errorf("want at least %d %s, found %d", min, kind, count[kind])
		}
	}
	// Multi-document files really are read as several objects.
	if n := len(objs); n < 20 {
		t.Errorf("only %d objects parsed from deploy/kubernetes", n)
	}
	if _, err := ParseYAML("bad.yaml", []byte("a: 1\n---\nb: [\n")); err == nil {
		t.Error("a broken second document was accepted")
	}
	for name, doc := range map[string]string{
		"a duplicate key":  "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nmetadata: {name: b}\n",
		"an unknown kind":  "apiVersion: v1\nkind: Namespaces\nmetadata: {name: a}\n",
		"no kind":          "apiVersion: v1\nmetadata: {name: a}\n",
		"a misspelt field": "apiVersion: v1\nkind: Namespace\nmetadata: {nmae: a}\n",
	} {
		if _, err := ParseYAML("bad.yaml", []byte(doc)); err == nil {
			t.Errorf("%s was accepted", name)
		}
	}
}

// TestKubernetesManifests runs every check on the shipped manifests.
func TestKubernetesManifests(t *testing.T) {
	objs := parseK8s(t, readDir(t, k8sDir(t), ".yaml"))
	for _, c := range k8sChecks {
		t.Run(c.name, func(t *testing.T) { report(t, c.fn(objs)) })
	}
}

// TestKubernetesChecksCatchBreakage breaks the shipped manifests in the
// ways that break deployments and expects the matching check to say so.
func TestKubernetesChecksCatchBreakage(t *testing.T) {
	const sc, ctl, node, rbac, cfg, drv = "storageclass.yaml", "controller.yaml", "node.yaml", "rbac.yaml", "config.yaml", "csidriver.yaml"
	const schema = "" // refused by the strict decode into the API types
	cases := []struct {
		name, check, file, old, new, want string
	}{
		{"object without a name", "Identity", sc, "  name: libstorage-xfs\n", "", "no metadata.name"},
		{"namespaced object without namespace", "Identity", cfg, "  namespace: csi-libstorage\n", "", "no metadata.namespace"},
		{"driver renamed", "DriverNames", drv, "name: csi.libstorage.io", "name: libstorage.csi.io", "must be named csi.libstorage.io"},
		{"attach not required", "DriverNames", drv, "attachRequired: true", "attachRequired: false", "spec.attachRequired"},
		{"fsGroupPolicy", "DriverNames", drv, "fsGroupPolicy: File", "fsGroupPolicy: None", "spec.fsGroupPolicy"},
		{"class for another provisioner", "DriverNames", sc, "provisioner: csi.libstorage.io", "provisioner: libstorage.io", "provisioner \"libstorage.io\""},
		{"snapshot class for another driver", "DriverNames", "snapshotclass.yaml", "driver: csi.libstorage.io", "driver: ebs.csi.aws.com", "driver \"ebs.csi.aws.com\""},
		{"misspelt parameter", "StorageClasses", sc, "  fsType: ext4\n", "  fstype: ext4\n", "parameter \"fstype\" is not known"},
		{"EBS key on a file backend", "StorageClasses", sc, "  fsType: ext4\n", "  fsType: ext4\n  iops: \"3000\"\n", "parameter \"iops\" is not known"},
		{"unquoted boolean", schema, sc, "preallocate: \"true\"", "preallocate: true", "cannot unmarshal bool into Go struct field StorageClass.parameters of type string"},
		// Misspelt fields and wrong types: the API types refuse them.
		{"misspelt mountPropagation", schema, node, "mountPropagation: Bidirectional", "mountPropagaton: Bidirectional", `unknown field "mountPropagaton"`},
		{"misspelt metadata field", schema, sc, "  name: libstorage-xfs\n", "  name: libstorage-xfs\n  labelz: {a: b}\n", `unknown field "labelz"`},
		{"misspelt CSIDriver field", schema, drv, "attachRequired: true", "attachRequire: true", `unknown field "attachRequire"`},
		{"misspelt snapshot class field", schema, "snapshotclass.yaml", "deletionPolicy: Delete", "deletionPolicey: Delete", `unknown field "deletionPolicey"`},
		{"misspelt kustomization field", schema, "kustomization.yaml", "resources:", "resource:", `unknown field "resource"`},
		{"replicas as a string", schema, ctl, "replicas: 1", "replicas: \"1\"", "cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"},
		{"privileged as a string", schema, node, "privileged: true", "privileged: \"yes\"", "of type bool"},
		{"an argument as a list", schema, ctl, "--http-endpoint=:9808", "--http-endpoint=:9808\n            - [1]", "cannot unmarshal array"},
		{"bad fsType value", "StorageClasses", sc, "  fsType: ext4\n", "  fsType: ext3\n", "fsType=\"ext3\""},
		{"fsType disagrees with the kubelet's", "StorageClasses", sc, "csi.storage.k8s.io/fstype: xfs", "csi.storage.k8s.io/fstype: ext4", "disagrees"},
		{"unknown backend", "StorageClasses", sc, "backend: shared", "backend: nfs", "backend \"nfs\" is not in the plugin's configuration"},
		{"overwritefs without allowOverwrite", "StorageClasses", sc, "  fsType: ext4\n", "  fsType: ext4\n  overwritefs: \"true\"\n", "allowOverwrite"},
		{"no expansion", "StorageClasses", sc, "allowVolumeExpansion: true", "allowVolumeExpansion: false", "allowVolumeExpansion"},
		{"immediate binding", "StorageClasses", sc, "volumeBindingMode: WaitForFirstConsumer", "volumeBindingMode: Immediate", "WaitForFirstConsumer"},
		{"config with a misspelt backend key", "StorageClasses", cfg, "dir: /var/lib", "dirr: /var/lib", "dirr"},
		{"config with an unknown backend type", "StorageClasses", cfg, "type: file", "type: nfs", "does not have"},
		{"config with an unknown top-level key", "StorageClasses", cfg, "allowOverwrite: false", "allowOverwrites: false", "allowOverwrites"},
		{"controller in mode all", "PluginModes", ctl, "--mode=controller", "--mode=all", "want \"controller\""},
		{"node in controller mode", "PluginModes", node, "--mode=node", "--mode=controller", "want \"node\""},
		{"two controllers", "PluginModes", ctl, "replicas: 1", "replicas: 2", "spec.replicas"},
		{"node id from the hostname", "PluginModes", node, "- --node-id=$(KUBE_NODE_NAME)\n", "", "no --node-id"},
		{"node id from an undefined variable", "EnvRefs", node, "--node-id=$(KUBE_NODE_NAME)", "--node-id=$(NODE_NAME)", "$(NODE_NAME) is not in its env"},
		{"node id from the wrong field", "PluginModes", node, "fieldPath: spec.nodeName", "fieldPath: metadata.name", "spec.nodeName"},
		{"node plugin not privileged", "NodePrivileges", node, "privileged: true", "privileged: false", "not privileged"},
		{"kubelet dir not bidirectional", "NodePrivileges", node, "mountPropagation: Bidirectional", "mountPropagation: HostToContainer", "want Bidirectional"},
		{"kubelet dir at another path", "NodePrivileges", node, "mountPath: /var/lib/kubelet\n", "mountPath: /kubelet\n", "does not mount /var/lib/kubelet"},
		{"no host /dev", "NodePrivileges", node, "path: /dev\n", "path: /run/dev\n", "/dev"},
		{"sidecar on another socket", "Sockets", ctl, "--csi-address=/csi/csi.sock", "--csi-address=/run/csi/socket", "but the plugin listens on /csi/csi.sock"},
		{"sidecar without the socket volume", "Sockets", ctl, "          volumeMounts:\n            - name: socket-dir\n              mountPath: /csi\n          resources:", "          resources:", "is not the plugin's volume"},
		{"plugin socket outside the shared volume", "Sockets", node, "--endpoint=unix:///csi/csi.sock", "--endpoint=unix:///run/csi.sock", "sidecar"},
		{"controller socket on a hostPath", "Sockets", ctl, "emptyDir: {}", "hostPath: {path: /tmp/csi}", "emptyDir"},
		{"registration path not the socket", "Sockets", node, "registration-path=/var/lib/kubelet/plugins/csi.libstorage.io/csi.sock", "registration-path=/var/lib/kubelet/plugins/libstorage/csi.sock", "--kubelet-registration-path"},
		{"registration dir not mounted", "Sockets", node, "path: /var/lib/kubelet/plugins_registry", "path: /var/lib/kubelet/plugins-registry", "plugins_registry"},
		{"pool at another path", "PoolMounts", node, "mountPath: /var/lib/csi-libstorage/pool", "mountPath: /pool", "does not mount the host's pool"},
		{"pool read-only in the controller", "PoolMounts", ctl, "mountPropagation: HostToContainer", "mountPropagation: HostToContainer\n              readOnly: true", "read-only"},
		{"unknown service account", "ServiceAccounts", ctl, "serviceAccountName: csi-libstorage-controller", "serviceAccountName: csi-controller", "ServiceAccount csi-libstorage/csi-controller does not exist"},
		{"binding to a missing role", "ServiceAccounts", rbac, "  name: csi-libstorage-external-resizer\n  apiGroup", "  name: external-resizer-runner\n  apiGroup", "roleRef ClusterRole external-resizer-runner does not exist"},
		{"attacher without status patch", "Permissions", rbac, "resources: [\"volumeattachments/status\"]", "resources: [\"volumeattachment/status\"]", "volumeattachments/status"},
		{"provisioner cannot delete PVs", "Permissions", rbac, "verbs: [\"get\", \"list\", \"watch\", \"create\", \"patch\", \"delete\"]", "verbs: [\"get\", \"list\", \"watch\", \"create\", \"patch\"]", "lacks [delete] on persistentvolumes"},
		{"no lease permissions", "Permissions", rbac, "resources: [\"leases\"]", "resources: [\"lease\"]", "--leader-election"},
		{"wildcard", "Permissions", rbac, "resources: [\"pods\"]\n    verbs: [\"get\", \"list\", \"watch\"]", "resources: [\"pods\"]\n    verbs: [\"*\"]", "grants verbs"},
		{"latest image", "Images", node, "livenessprobe:v2.15.0", "livenessprobe:latest", "not pinned"},
		{"untagged image", "Images", ctl, "csi-resizer:v1.13.2", "csi-resizer", "no tag"},
		{"sidecar from elsewhere", "Images", ctl, "registry.k8s.io/sig-storage/csi-attacher", "docker.io/example/csi-attacher", "not from registry.k8s.io/sig-storage"},
		{"metrics on the probe's port", "Ports", node, "--metrics-address=0.0.0.0:9809", "--metrics-address=0.0.0.0:9808", "both listen on port 9808"},
		{"probe on the wrong port", "Ports", ctl, "--http-endpoint=:9808", "--http-endpoint=:9810", "livenessProbe"},
		{"selector mismatch", "Selectors", node, "    matchLabels:\n      app.kubernetes.io/name: csi-libstorage-node", "    matchLabels:\n      app.kubernetes.io/name: csi-node", "does not match"},
		{"claim on an unknown class", "Claims", "example-statefulset.yaml", "storageClassName: libstorage-ext4", "storageClassName: fast", "not shipped"},
	}
	base := readDir(t, k8sDir(t), ".yaml")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, err := parseAll(mutate(t, base, c.file, c.old, c.new))
			if c.check == schema {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("the decode did not refuse it with %q; it said: %v", c.want, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			errs := checkByName(c.check)(objs)
			if !strings.Contains(joinErrs(errs), c.want) {
				t.Errorf("check %s did not report %q; it said:\n%s", c.check, c.want, joinErrs(errs))
			}
		})
	}
}

// TestKustomization: kustomization.yaml lists files that exist, and every
// manifest but the snapshot class (it needs CRDs first) and the examples.
func TestKustomization(t *testing.T) {
	dir := k8sDir(t)
	objs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var k *Object
	for i := range objs {
		if objs[i].Kind == "Kustomization" {
			k = &objs[i]
		}
	}
	if k == nil {
		t.Fatal("no Kustomization")
	}
	listed := k.Obj.(*Kustomization).Resources
	for _, r := range listed {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		b := filepath.Base(f)
		optional := b == "kustomization.yaml" || b == "snapshotclass.yaml" || strings.HasPrefix(b, "example-")
		if !optional && !slices.Contains(listed, b) {
			t.Errorf("%s is not in kustomization.yaml", b)
		}
		if optional && slices.Contains(listed, b) {
			t.Errorf("%s is in kustomization.yaml but should be applied by hand", b)
		}
	}
	// The namespace comes first, so a plain kubectl apply of the list in
	// order works too.
	if len(listed) == 0 || listed[0] != "namespace.yaml" {
		t.Errorf("kustomization.yaml should list namespace.yaml first, lists %v", listed)
	}
}
