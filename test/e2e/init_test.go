package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-libstorage/csi-libstorage/deploy/check/mesos"
)

// initResult is what Mesos keeps from plugin initialisation.
type initResult struct {
	controllerCaps map[csi.ControllerServiceCapability_RPC_Type]bool
	nodeID         string // from NodeGetInfo, when Mesos asks for it
}

// mesosInit replays prepareServices (v1_volume_manager.cpp): Probe (v1,
// first), GetPluginCapabilities, GetPluginInfo, ControllerGetCapabilities
// when a controller service is configured, NodeGetCapabilities, and
// NodeGetInfo only when the controller offers PUBLISH_UNPUBLISH_VOLUME. It
// checks what Mesos fails on.
func mesosInit(t *testing.T, p *plugin, controller, node bool) initResult {
	t.Helper()
	var res initResult
	probe := must(t, "Probe", func(ctx context.Context) (*csi.ProbeResponse, error) {
		return p.id.Probe(ctx, &csi.ProbeRequest{})
	})
	if r := probe.GetReady(); r != nil && !r.GetValue() {
		t.Errorf("%s: Probe ready=false (Mesos ignores it, but the pool should be usable)", p.name)
	}
	pcaps := must(t, "GetPluginCapabilities", func(ctx context.Context) (*csi.GetPluginCapabilitiesResponse, error) {
		return p.id.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	})
	hasCtl := false
	for _, c := range pcaps.GetCapabilities() {
		if c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE {
			hasCtl = true
		}
	}
	if hasCtl != controller {
		t.Errorf("%s: CONTROLLER_SERVICE advertised=%t, want %t (Mesos fails initialisation when a configured controller container lacks it)", p.name, hasCtl, controller)
	}
	info := must(t, "GetPluginInfo", func(ctx context.Context) (*csi.GetPluginInfoResponse, error) {
		return p.id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	})
	if info.GetName() != mesos.PluginType || info.GetVendorVersion() == "" {
		t.Errorf("%s: plugin info %q %q, want name %q and a version", p.name, info.GetName(), info.GetVendorVersion(), mesos.PluginType)
	}
	if controller {
		cc := must(t, "ControllerGetCapabilities", func(ctx context.Context) (*csi.ControllerGetCapabilitiesResponse, error) {
			return p.ctl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
		})
		res.controllerCaps = map[csi.ControllerServiceCapability_RPC_Type]bool{}
		for _, c := range cc.GetCapabilities() {
			res.controllerCaps[c.GetRpc().GetType()] = true
		}
	}
	if !node {
		return res
	}
	nc := must(t, "NodeGetCapabilities", func(ctx context.Context) (*csi.NodeGetCapabilitiesResponse, error) {
		return p.node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	})
	staged := false
	for _, c := range nc.GetCapabilities() {
		if c.GetRpc().GetType() == csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME {
			staged = true
		}
	}
	if !staged {
		t.Errorf("%s: no STAGE_UNSTAGE_VOLUME: Mesos would skip NodeStage and publish an unstaged volume", p.name)
	}
	if !controller || res.controllerCaps[csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME] {
		ni := must(t, "NodeGetInfo", func(ctx context.Context) (*csi.NodeGetInfoResponse, error) {
			return p.node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		})
		res.nodeID = ni.GetNodeId()
	}
	return res
}

// TestMesosInitSequence launches the three shapes Mesos and an operator
// run (the managed node plugin of the isolator config, the SLRP's plugin
// with both services, a controller-only process) from the shipped configs
// and replays the agent's initialisation against each.
func TestMesosInitSequence(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "pool")

	t.Run("managed node plugin", func(t *testing.T) {
		e := e.with(t)
		p := e.nodePlugin("node", "agent-0001-S1", e.config(isolatorConfig, pool), false)
		res := mesosInit(t, p, false, true)
		if res.nodeID != "agent-0001-S1" {
			t.Errorf("NodeGetInfo node_id %q, want MESOS_AGENT_ID %q", res.nodeID, "agent-0001-S1")
		}
		_, err := call(t, func(ctx context.Context) (*csi.ControllerGetCapabilitiesResponse, error) {
			return p.ctl.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
		})
		wantCode(t, "ControllerGetCapabilities on a node-only plugin", err, codes.Unimplemented)
		p.stop()
	})

	t.Run("SLRP plugin", func(t *testing.T) {
		e := e.with(t)
		p := e.slrpPlugin("slrp", "agent-0001-S1", e.config(slrpConfig, filepath.Join(e.dir, "local-pool")))
		res := mesosInit(t, p, true, true)
		for _, c := range []csi.ControllerServiceCapability_RPC_Type{
			csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
			csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
			csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
			csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		} {
			if !res.controllerCaps[c] {
				t.Errorf("controller lacks %v, which the SLRP needs", c)
			}
		}
		if res.nodeID != "agent-0001-S1" {
			t.Errorf("NodeGetInfo node_id %q, want MESOS_AGENT_ID", res.nodeID)
		}
		p.stop()
	})

	t.Run("controller only", func(t *testing.T) {
		e := e.with(t)
		p := e.controllerPlugin("controller", e.config(isolatorConfig, pool))
		mesosInit(t, p, true, false)
		_, err := call(t, func(ctx context.Context) (*csi.NodeGetInfoResponse, error) {
			return p.node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		})
		wantCode(t, "NodeGetInfo on a controller-only plugin", err, codes.Unimplemented)
		p.stop()
	})

	e.assertClean()
}
