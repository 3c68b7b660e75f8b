package ebs

import (
	"errors"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

// TestNodeNamedByPrivateDNSName: a Kubernetes node name that is the
// instance's private DNS name (EKS) maps to the instance without the node
// tagging it, so registering makes no EC2 call; a DNS name of no instance
// is still an unknown node.
func TestNodeNamedByPrivateDNSName(t *testing.T) {
	e := newEnv(t)
	name := ec2sim.PrivateDNSName("us-east-1", inst2)
	node := e.backend(e.config("c1", inst2), name)
	e.sim.ResetCalls()
	if err := node.RegisterNode(ctx(t), name); err != nil {
		t.Fatal(err)
	}
	if calls := e.sim.CallCounts(); len(calls) != 0 {
		t.Fatalf("registering a node named by its private DNS name called EC2: %v", calls)
	}
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "dns", 1, nil)
	pc := attach(t, ctrl, v.ID, name, false)
	if inst, _, _ := e.attachment(v.ID); inst != inst2 {
		t.Fatalf("attached to %s, want %s", inst, inst2)
	}
	if pc[PublishNode] != name {
		t.Fatalf("publish context names node %q, want %q", pc[PublishNode], name)
	}
	other := ec2sim.PrivateDNSName("us-east-1", "i-0000000000000dead")
	if _, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: other, Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrNodeNotFound) {
		t.Fatalf("attach to a DNS name of no instance: %v, want ErrNodeNotFound", err)
	}
	detach(t, ctrl, v.ID, name)
}
