package main

import (
	"flag"
	"fmt"
	"math"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func setupSnapshotCreate(fs *flag.FlagSet) action {
	source := fs.String("source", "", "the `ID` of the volume to snapshot (required)")
	params := newKV(fs, "param", "snapshot parameter `KEY=VALUE` (repeatable)")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if *source == "" {
			return usagef("--source is required")
		}
		resp, err := invoke(c, "CreateSnapshot", c.ctrl.CreateSnapshot, &csi.CreateSnapshotRequest{
			Name: args[0], SourceVolumeId: *source, Parameters: params.m, Secrets: secrets.m,
		})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { snapshotRows(t, resp.GetSnapshot()) })
	}
}

func snapshotRows(t *table, s *csi.Snapshot) {
	t.row("SNAPSHOT ID", s.GetSnapshotId())
	t.row("SOURCE", s.GetSourceVolumeId())
	t.row("SIZE", fmtCapacity(s.GetSizeBytes()))
	t.row("CREATED", s.GetCreationTime().AsTime().UTC().Format(time.RFC3339))
	t.row("READY", fmt.Sprint(s.GetReadyToUse()))
}

func setupSnapshotList(fs *flag.FlagSet) action {
	source := fs.String("source", "", "only snapshots of the volume `ID`")
	id := fs.String("id", "", "only the snapshot `ID`")
	max := fs.Int("max", 0, "at most `N` entries per page (0: plugin decides)")
	all := fs.Bool("all", false, "follow next tokens and list every snapshot")
	secrets := newSecrets(fs)
	return func(c *client, _ []string) error {
		if *max < 0 || *max > math.MaxInt32 {
			return usagef("--max must be between 0 and %d", math.MaxInt32)
		}
		req := &csi.ListSnapshotsRequest{MaxEntries: int32(*max), SourceVolumeId: *source, SnapshotId: *id, Secrets: secrets.m}
		merged := &csi.ListSnapshotsResponse{}
		seen := map[string]bool{}
		for {
			resp, err := invoke(c, "ListSnapshots", c.ctrl.ListSnapshots, req)
			if err != nil {
				return err
			}
			merged.Entries = append(merged.Entries, resp.GetEntries()...)
			merged.NextToken = resp.GetNextToken()
			if !*all || merged.NextToken == "" {
				break
			}
			if seen[merged.NextToken] {
				return &failure{msg: fmt.Sprintf("ListSnapshots: plugin repeated next_token %q", merged.NextToken)}
			}
			seen[merged.NextToken] = true
			req.StartingToken = merged.NextToken
		}
		if *all {
			merged.NextToken = ""
		}
		return c.emit(merged, func(t *table) {
			t.row("SNAPSHOT ID", "SOURCE", "SIZE", "CREATED", "READY")
			for _, e := range merged.GetEntries() {
				s := e.GetSnapshot()
				t.row(s.GetSnapshotId(), s.GetSourceVolumeId(), fmtCapacity(s.GetSizeBytes()),
					s.GetCreationTime().AsTime().UTC().Format(time.RFC3339), fmt.Sprint(s.GetReadyToUse()))
			}
			if merged.GetNextToken() != "" {
				t.row("NEXT TOKEN", merged.GetNextToken())
			}
		})
	}
}

func setupSnapshotDelete(fs *flag.FlagSet) action {
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		resp, err := invoke(c, "DeleteSnapshot", c.ctrl.DeleteSnapshot, &csi.DeleteSnapshotRequest{SnapshotId: args[0], Secrets: secrets.m})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("deleted snapshot " + args[0]) })
	}
}

func setupVolumeExpand(fs *flag.FlagSet) action {
	var size, limit sizeFlag
	fs.Var(&size, "size", "new capacity `SIZE` (required)")
	fs.Var(&limit, "limit", "maximum capacity `SIZE`")
	caps := addCapFlags(fs)
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if !size.set {
			return usagef("--size is required")
		}
		req := &csi.ControllerExpandVolumeRequest{VolumeId: args[0], CapacityRange: &csi.CapacityRange{RequiredBytes: size.bytes, LimitBytes: limit.bytes}, Secrets: secrets.m}
		if caps.given() {
			vc, err := caps.capability()
			if err != nil {
				return err
			}
			req.VolumeCapability = vc
		}
		resp, err := invoke(c, "ControllerExpandVolume", c.ctrl.ControllerExpandVolume, req)
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) {
			t.row("VOLUME ID", args[0])
			t.row("CAPACITY", fmtCapacity(resp.GetCapacityBytes()))
			t.row("NODE EXPANSION REQUIRED", fmt.Sprint(resp.GetNodeExpansionRequired()))
		})
	}
}

func setupNodeExpand(fs *flag.FlagSet) action {
	path := fs.String("path", "", "the staging or target `PATH` where the volume is (required)")
	var size sizeFlag
	fs.Var(&size, "size", "new capacity `SIZE`, as given to volume expand")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		if *path == "" {
			return usagef("--path is required")
		}
		req := &csi.NodeExpandVolumeRequest{VolumeId: args[0], VolumePath: *path, Secrets: secrets.m}
		if size.set {
			req.CapacityRange = &csi.CapacityRange{RequiredBytes: size.bytes}
		}
		resp, err := invoke(c, "NodeExpandVolume", c.node.NodeExpandVolume, req)
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) {
			t.row("VOLUME ID", args[0])
			t.row("CAPACITY", fmtCapacity(resp.GetCapacityBytes()))
		})
	}
}
