// Package check reads the Kubernetes manifests in deploy/kubernetes and the
// Nomad job and volume files in deploy/nomad, and its tests check them for
// the mistakes that break a deployment.
//
// The manifests are decoded strictly into their k8s.io/api types, so the
// schema refuses a misspelt field or a value of the wrong type; the Nomad
// files are parsed by HCL itself (hashicorp/hcl/v2), and the blocks the
// checks read are decoded strictly with gohcl. The checks here are what a
// schema cannot say: a driver name that does not match the plugin,
// StorageClass parameters the plugin refuses, a sidecar talking to another
// socket than the plugin's, a node plugin whose mounts never reach the
// host, missing permissions, unpinned images. No cluster is involved.
package check
