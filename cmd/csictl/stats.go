package main

import (
	"github.com/csi-libstorage/csi-libstorage/internal/units"

	"flag"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func setupStats(fs *flag.FlagSet) action {
	path := fs.String("path", "", "`PATH` the volume is published at (volume_path, required)")
	staging := fs.String("staging", "", "staging target `PATH`, if staged")
	return func(c *client, args []string) error {
		if *path == "" {
			return usagef("--path is required")
		}
		resp, err := invoke(c, "NodeGetVolumeStats", c.node.NodeGetVolumeStats, &csi.NodeGetVolumeStatsRequest{
			VolumeId:          args[0],
			VolumePath:        *path,
			StagingTargetPath: *staging,
		})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) {
			t.row("UNIT", "TOTAL", "USED", "AVAILABLE")
			for _, u := range resp.GetUsage() {
				f := func(n int64) string { return strconv.FormatInt(n, 10) }
				if u.GetUnit() == csi.VolumeUsage_BYTES {
					f = fmtCapacity
				}
				t.row(strings.ToLower(u.GetUnit().String()), f(u.GetTotal()), f(u.GetUsed()), f(u.GetAvailable()))
			}
		})
	}
}

func setupCapacity(fs *flag.FlagSet) action {
	caps := addCapFlags(fs)
	params := newKV(fs, "param", "creation parameter `KEY=VALUE` (repeatable)")
	return func(c *client, _ []string) error {
		req := &csi.GetCapacityRequest{Parameters: params.m}
		if caps.given() {
			vc, err := caps.capability()
			if err != nil {
				return err
			}
			req.VolumeCapabilities = []*csi.VolumeCapability{vc}
		}
		resp, err := invoke(c, "GetCapacity", c.ctrl.GetCapacity, req)
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) {
			t.row("AVAILABLE", units.Human(resp.GetAvailableCapacity()))
			opt := func(v interface{ GetValue() int64 }, set bool) string {
				if !set {
					return "-"
				}
				return units.Human(v.GetValue())
			}
			t.row("MAXIMUM VOLUME SIZE", opt(resp.GetMaximumVolumeSize(), resp.GetMaximumVolumeSize() != nil))
			t.row("MINIMUM VOLUME SIZE", opt(resp.GetMinimumVolumeSize(), resp.GetMinimumVolumeSize() != nil))
		})
	}
}
