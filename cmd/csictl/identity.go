package main

import (
	"encoding/json"
	"flag"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// infoJSON is the -o json document of "info": each member is the protojson
// rendering of one response, null when the service is not served.
type infoJSON struct {
	PluginInfo             json.RawMessage `json:"plugin_info"`
	PluginCapabilities     json.RawMessage `json:"plugin_capabilities"`
	ControllerCapabilities json.RawMessage `json:"controller_capabilities"`
	NodeCapabilities       json.RawMessage `json:"node_capabilities"`
	NodeInfo               json.RawMessage `json:"node_info"`
}

func setupInfo(*flag.FlagSet) action {
	return func(c *client, _ []string) error {
		info, err := invoke(c, "GetPluginInfo", c.id.GetPluginInfo, &csi.GetPluginInfoRequest{})
		if err != nil {
			return err
		}
		pcaps, err := invoke(c, "GetPluginCapabilities", c.id.GetPluginCapabilities, &csi.GetPluginCapabilitiesRequest{})
		if err != nil {
			return err
		}
		ccaps, err := invoke(c, "ControllerGetCapabilities", c.ctrl.ControllerGetCapabilities, &csi.ControllerGetCapabilitiesRequest{})
		if err != nil && !isUnimplemented(err) {
			return err
		}
		ncaps, err := invoke(c, "NodeGetCapabilities", c.node.NodeGetCapabilities, &csi.NodeGetCapabilitiesRequest{})
		if err != nil && !isUnimplemented(err) {
			return err
		}
		ninfo, err := invoke(c, "NodeGetInfo", c.node.NodeGetInfo, &csi.NodeGetInfoRequest{})
		if err != nil && !isUnimplemented(err) {
			return err
		}

		if c.structured() {
			var doc infoJSON
			var errs [5]error
			doc.PluginInfo, errs[0] = protoJSON(info)
			doc.PluginCapabilities, errs[1] = protoJSON(pcaps)
			doc.ControllerCapabilities, errs[2] = protoJSON(ccaps)
			doc.NodeCapabilities, errs[3] = protoJSON(ncaps)
			doc.NodeInfo, errs[4] = protoJSON(ninfo)
			for _, e := range errs {
				if e != nil {
					return e
				}
			}
			return c.writeJSON(doc)
		}

		return c.table(func(t *table) {
			t.row("NAME", info.GetName())
			t.row("VERSION", dash(info.GetVendorVersion()))
			t.row("MANIFEST", fmtMap(info.GetManifest()))
			t.row("PLUGIN CAPABILITIES", pluginCapNames(pcaps.GetCapabilities()))
			if ccaps == nil {
				t.row("CONTROLLER CAPABILITIES", "(controller service not served)")
			} else {
				var names []string
				for _, cp := range ccaps.GetCapabilities() {
					names = append(names, cp.GetRpc().GetType().String())
				}
				t.row("CONTROLLER CAPABILITIES", dash(strings.Join(names, ", ")))
			}
			if ncaps == nil {
				t.row("NODE CAPABILITIES", "(node service not served)")
			} else {
				var names []string
				for _, cp := range ncaps.GetCapabilities() {
					names = append(names, cp.GetRpc().GetType().String())
				}
				t.row("NODE CAPABILITIES", dash(strings.Join(names, ", ")))
			}
			if ninfo != nil {
				nodeInfoRows(t, ninfo)
			}
		})
	}
}

func pluginCapNames(caps []*csi.PluginCapability) string {
	var names []string
	for _, cp := range caps {
		switch {
		case cp.GetService() != nil:
			names = append(names, cp.GetService().GetType().String())
		case cp.GetVolumeExpansion() != nil:
			names = append(names, "VOLUME_EXPANSION="+cp.GetVolumeExpansion().GetType().String())
		default:
			names = append(names, "UNKNOWN")
		}
	}
	return dash(strings.Join(names, ", "))
}

func nodeInfoRows(t *table, ni *csi.NodeGetInfoResponse) {
	t.row("NODE ID", ni.GetNodeId())
	max := "-"
	if n := ni.GetMaxVolumesPerNode(); n > 0 {
		max = strconv.FormatInt(n, 10)
	}
	t.row("MAX VOLUMES PER NODE", max)
	t.row("NODE TOPOLOGY", fmtMap(ni.GetAccessibleTopology().GetSegments()))
}

func setupProbe(*flag.FlagSet) action {
	return func(c *client, _ []string) error {
		resp, err := invoke(c, "Probe", c.id.Probe, &csi.ProbeRequest{})
		if err != nil {
			return err
		}
		// An unset ready field means ready (CSI spec, Probe).
		ready := resp.GetReady() == nil || resp.GetReady().GetValue()
		err = c.emit(resp, func(t *table) {
			if ready {
				t.row("READY", "true")
			} else {
				t.row("READY", "false")
			}
		})
		if err == nil && !ready {
			err = &failure{msg: "Probe: plugin is not ready"}
		}
		return err
	}
}
