// Package deploycheck reads the Kubernetes manifests in deploy/kubernetes
// and the Nomad job and volume files in deploy/nomad, and its tests check
// them for the mistakes that break a deployment: a driver name that does
// not match the plugin, StorageClass parameters the plugin refuses, a
// sidecar talking to another socket than the plugin's, a node plugin whose
// mounts never reach the host, missing permissions, unpinned images.
//
// No cluster is involved: the checks are structural. The package holds a
// YAML object model over yaml.v3 and a small parser for the subset of HCL
// the Nomad files use.
package check
