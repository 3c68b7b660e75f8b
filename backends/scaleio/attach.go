package scaleio

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
)

var volumeIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func isNotFound(err error) bool { return errors.Is(err, backends.ErrNotFound) }

func zapVolume(id, name string) zap.Field {
	return zap.Dict("volume", zap.String("id", id), zap.String("name", name))
}

// sdcOf finds the SDC that is node: the node id is the SDC's GUID; an SDC
// named like the node id, or, for this plugin's own node id, the GUID
// drv_cfg reports, also match (a Mesos agent id as node id).
func (b *Backend) sdcOf(ctx context.Context, system, node string) (*sdc, error) {
	list, err := b.c.sdcs(ctx, system)
	if err != nil {
		return nil, mapErr(err, "list SDCs")
	}
	want := strings.ToUpper(node)
	if node == b.node && !sdcGUIDRE.MatchString(node) {
		if g, err := b.localGUID(ctx); err == nil {
			want = g
		}
	}
	for i := range list {
		if strings.ToUpper(list[i].SdcGUID) == want || (list[i].Name != "" && list[i].Name == node) {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("%w: no SDC of system %s has GUID or name %q; the node id must be the node's SDC GUID (drv_cfg --query_guid)", backends.ErrNodeNotFound, system, node)
}

// withNodes puts the SDC GUIDs in place of SDC ids in v's attachments, so
// they carry node ids.
func (b *Backend) withNodes(ctx context.Context, system string, vs ...*backends.Volume) error {
	var list []sdc
	for _, v := range vs {
		for i, a := range v.Attachments {
			if list == nil {
				var err error
				if list, err = b.c.sdcs(ctx, system); err != nil {
					return mapErr(err, "list SDCs")
				}
			}
			for _, s := range list {
				if s.ID == a.Node {
					v.Attachments[i].Node = strings.ToUpper(s.SdcGUID)
				}
			}
		}
	}
	return nil
}

// Attach implements backends.Backend: it maps the volume to the node's SDC.
// The publish context is empty, as the node finds the device from the
// volume id.
func (b *Backend) Attach(ctx context.Context, id string, req backends.AttachRequest) (map[string]string, error) {
	unlock, err := b.locks.Lock(ctx, "vol/"+id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	raw, v, err := b.get(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return nil, err
	}
	s, err := b.sdcOf(ctx, p.system, req.Node)
	if err != nil {
		return nil, err
	}
	if err := b.withNodes(ctx, p.system, v); err != nil {
		return nil, err
	}
	req.Node = strings.ToUpper(s.SdcGUID)
	done, err := backends.CheckAttach(v, req)
	if errors.Is(err, backends.ErrConflict) {
		// Other SDCs hold it: they are unmapped (fenced) only when the
		// gateway reports them disconnected (takeover.go).
		if err := b.takeOver(ctx, id, raw, p.system, s, req.Node); err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", id, req.Node, err)
		}
		if _, v, err = b.get(ctx, id); err != nil {
			return nil, err
		}
		if err := b.withNodes(ctx, p.system, v); err != nil {
			return nil, err
		}
		done, err = backends.CheckAttach(v, req)
	}
	if err != nil || done {
		return map[string]string{}, err
	}
	if m, _ := volname.Parse(v.Name); m.ByNode != req.ByNode && (req.ByNode || len(v.Attachments) == 0) {
		// Recorded before the mapping, so a crash in between leaves a
		// flag on an unmapped volume, which nothing reads.
		m.ByNode = req.ByNode
		if err := b.rename(ctx, id, m); err != nil {
			return nil, err
		}
	}
	access := "ReadWrite"
	if req.ReadOnly || req.Mode.ReadOnly() {
		access = "ReadOnly"
	}
	body := map[string]string{"sdcId": s.ID, "accessMode": access}
	if req.Mode.MultiNode() {
		body["allowMultipleMappings"] = "TRUE"
	}
	err = b.c.volumeAction(ctx, id, "addMappedSdc", body)
	if err != nil && !isAPI(err, msgAlreadyMapped) {
		return nil, mapErr(err, fmt.Sprintf("map volume %s to SDC %s", id, s.ID))
	}
	fault.Point("scaleio.map.requested")
	b.log.Info("volume mapped", zapVolume(id, v.Name), zap.String("sdc", s.ID), zap.String("accessMode", access))
	return map[string]string{}, nil
}

// Detach implements backends.Backend.
func (b *Backend) Detach(ctx context.Context, id, node string) error {
	unlock, err := b.locks.Lock(ctx, "vol/"+id)
	if err != nil {
		return err
	}
	defer unlock()
	raw, v, err := b.get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return err
	}
	s, err := b.sdcOf(ctx, p.system, node)
	if errors.Is(err, backends.ErrNodeNotFound) {
		return nil // an unknown node has nothing mapped
	}
	if err != nil {
		return err
	}
	mapped := false
	for _, m := range raw.MappedSdcInfo {
		mapped = mapped || m.SdcID == s.ID
	}
	if !mapped {
		return nil
	}
	err = b.c.volumeAction(ctx, id, "removeMappedSdc", map[string]string{"sdcId": s.ID})
	if err != nil && !isAPI(err, msgNotMapped) {
		if err = mapErr(err, fmt.Sprintf("unmap volume %s from SDC %s", id, s.ID)); !isNotFound(err) {
			return err
		}
	}
	fault.Point("scaleio.unmap.requested")
	b.log.Info("volume unmapped", zapVolume(id, v.Name), zap.String("sdc", s.ID))
	if m, _ := volname.Parse(v.Name); m.ByNode && len(raw.MappedSdcInfo) == 1 {
		m.ByNode = false
		return b.rename(ctx, id, m)
	}
	return nil
}
