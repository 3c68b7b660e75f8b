package main

import (
	"github.com/csi-libstorage/csi-libstorage/internal/units"

	"flag"
	"fmt"
	"math"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func setupVolumeCreate(fs *flag.FlagSet) action {
	var size, limit sizeFlag
	fs.Var(&size, "size", "requested capacity `SIZE` (capacity_range.required_bytes)")
	fs.Var(&limit, "limit", "maximum capacity `SIZE` (capacity_range.limit_bytes)")
	caps := addCapFlags(fs)
	params := newKV(fs, "param", "creation parameter `KEY=VALUE` (repeatable)")
	fromSnap := fs.String("from-snapshot", "", "start as a copy of the snapshot `ID`")
	fromVol := fs.String("from-volume", "", "start as a copy of the volume `ID`")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		vc, err := caps.capability()
		if err != nil {
			return err
		}
		if *fromSnap != "" && *fromVol != "" {
			return usagef("--from-snapshot and --from-volume cannot both be given")
		}
		if size.bytes > 0 && limit.bytes > 0 && limit.bytes < size.bytes {
			return usagef("--limit %s is below --size %s", units.Human(limit.bytes), units.Human(size.bytes))
		}
		req := &csi.CreateVolumeRequest{
			Name:               args[0],
			VolumeCapabilities: []*csi.VolumeCapability{vc},
			Parameters:         params.m,
			Secrets:            secrets.m,
		}
		if size.bytes > 0 || limit.bytes > 0 {
			req.CapacityRange = &csi.CapacityRange{RequiredBytes: size.bytes, LimitBytes: limit.bytes}
		}
		switch {
		case *fromSnap != "":
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: *fromSnap}}}
		case *fromVol != "":
			req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: *fromVol}}}
		}
		resp, err := invoke(c, "CreateVolume", c.ctrl.CreateVolume, req)
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { volumeRows(t, resp.GetVolume()) })
	}
}

// volumeRows draws one volume as KEY VALUE rows.
func volumeRows(t *table, v *csi.Volume) {
	t.row("VOLUME ID", v.GetVolumeId())
	capacity := fmtCapacity(v.GetCapacityBytes())
	if n := v.GetCapacityBytes(); n >= 1024 {
		capacity += fmt.Sprintf(" (%d bytes)", n)
	}
	t.row("CAPACITY", capacity)
	t.row("CONTEXT", fmtMap(v.GetVolumeContext()))
	t.row("TOPOLOGY", fmtTopologies(v.GetAccessibleTopology()))
	t.row("SOURCE", fmtSource(v.GetContentSource()))
}

func setupVolumeList(fs *flag.FlagSet) action {
	max := fs.Int("max", 0, "at most `N` entries per page (0: plugin decides)")
	token := fs.String("token", "", "start at the page with this `TOKEN` (a previous next_token)")
	all := fs.Bool("all", false, "follow next tokens and list every volume")
	return func(c *client, _ []string) error {
		if *max < 0 || *max > math.MaxInt32 {
			return usagef("--max must be between 0 and %d", math.MaxInt32)
		}
		req := &csi.ListVolumesRequest{MaxEntries: int32(*max), StartingToken: *token}
		resp, err := invoke(c, "ListVolumes", c.ctrl.ListVolumes, req)
		if err != nil {
			return err
		}
		if *all {
			// Merge every page into one response with no next_token.
			merged := &csi.ListVolumesResponse{Entries: resp.GetEntries()}
			seen := map[string]bool{*token: true}
			for next := resp.GetNextToken(); next != ""; next = resp.GetNextToken() {
				if seen[next] {
					return &failure{msg: fmt.Sprintf("ListVolumes: plugin repeated next_token %q", next)}
				}
				seen[next] = true
				req = &csi.ListVolumesRequest{MaxEntries: int32(*max), StartingToken: next}
				if resp, err = invoke(c, "ListVolumes", c.ctrl.ListVolumes, req); err != nil {
					return err
				}
				merged.Entries = append(merged.Entries, resp.GetEntries()...)
			}
			resp = merged
		}
		return c.emit(resp, func(t *table) {
			t.row("VOLUME ID", "CAPACITY", "PUBLISHED NODES", "CONTEXT")
			for _, e := range resp.GetEntries() {
				v, st := e.GetVolume(), e.GetStatus()
				t.row(v.GetVolumeId(), fmtCapacity(v.GetCapacityBytes()),
					dash(strings.Join(st.GetPublishedNodeIds(), ",")), fmtMap(v.GetVolumeContext()))
			}
			if nt := resp.GetNextToken(); nt != "" {
				t.row("")
				t.row("NEXT TOKEN: " + nt + " (use --token or --all for more)")
			}
		})
	}
}

func setupVolumeGet(*flag.FlagSet) action {
	return func(c *client, args []string) error {
		resp, err := invoke(c, "ControllerGetVolume", c.ctrl.ControllerGetVolume,
			&csi.ControllerGetVolumeRequest{VolumeId: args[0]})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) {
			volumeRows(t, resp.GetVolume())
			t.row("PUBLISHED NODES", dash(strings.Join(resp.GetStatus().GetPublishedNodeIds(), ",")))
		})
	}
}

func setupVolumeDelete(fs *flag.FlagSet) action {
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		resp, err := invoke(c, "DeleteVolume", c.ctrl.DeleteVolume,
			&csi.DeleteVolumeRequest{VolumeId: args[0], Secrets: secrets.m})
		if err != nil {
			return err
		}
		return c.emit(resp, func(t *table) { t.row("deleted volume " + args[0]) })
	}
}

func setupVolumeValidate(fs *flag.FlagSet) action {
	caps := addCapFlags(fs)
	params := newKV(fs, "param", "creation parameter `KEY=VALUE` (repeatable)")
	vctx := newKV(fs, "context", "volume context `KEY=VALUE` from CreateVolume (repeatable)")
	secrets := newSecrets(fs)
	return func(c *client, args []string) error {
		vc, err := caps.capability()
		if err != nil {
			return err
		}
		resp, err := invoke(c, "ValidateVolumeCapabilities", c.ctrl.ValidateVolumeCapabilities,
			&csi.ValidateVolumeCapabilitiesRequest{
				VolumeId:           args[0],
				VolumeCapabilities: []*csi.VolumeCapability{vc},
				Parameters:         params.m,
				VolumeContext:      vctx.m,
				Secrets:            secrets.m,
			})
		if err != nil {
			return err
		}
		confirmed := resp.GetConfirmed() != nil
		err = c.emit(resp, func(t *table) {
			t.row("CONFIRMED", fmt.Sprint(confirmed))
			t.row("MESSAGE", dash(resp.GetMessage()))
		})
		if err == nil && !confirmed {
			msg := "ValidateVolumeCapabilities: not confirmed"
			if m := resp.GetMessage(); m != "" {
				msg += ": " + m
			}
			err = &failure{msg: msg}
		}
		return err
	}
}
