// Package e2e holds end-to-end tests that launch the built csi-libstorage
// binary the way an Apache Mesos agent launches a managed CSI plugin and
// replay the agent's exact call sequences, paths and deadlines: the
// volume/csi isolator, the storage local resource provider, and two agents
// (node services in separate mount namespaces) sharing one pool.
//
// The tests need root (loop devices, mkfs, mount namespaces). The sequences
// follow /work/shared/reference/mesos.md.
package e2e
