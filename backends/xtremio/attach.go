package xtremio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
)

func isNotFound(err error) bool { return errors.Is(err, backends.ErrNotFound) }

// groupOf returns the initiator group that is node: the configured group
// for this plugin's own node, else the group named like the node id.
func (b *Backend) groupOf(node string) string {
	if b.cfg.InitiatorGroup != "" && node == b.node {
		return b.cfg.InitiatorGroup
	}
	return node
}

// Initiators reads this host's initiators: the iSCSI IQN from
// etc/iscsi/initiatorname.iscsi under the host root, and the FC WWPNs from
// class/fc_host/*/port_name under the sysfs root (0x-prefixed hex there,
// colon-separated for the XMS).
func (b *Backend) Initiators() ([]string, error) {
	var out []string
	f, err := os.Open(filepath.Join(b.hostRoot, "etc/iscsi/initiatorname.iscsi"))
	switch {
	case err == nil:
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if v, ok := strings.CutPrefix(line, "InitiatorName="); ok && v != "" {
				out = append(out, v)
			}
		}
		f.Close()
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	ports, _ := filepath.Glob(filepath.Join(b.sysfs, "class/fc_host/*/port_name"))
	for _, p := range ports {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		hex := strings.TrimPrefix(strings.TrimSpace(string(data)), "0x")
		if len(hex) != 16 {
			continue
		}
		var parts []string
		for i := 0; i < 16; i += 2 {
			parts = append(parts, hex[i:i+2])
		}
		out = append(out, strings.Join(parts, ":"))
	}
	sort.Strings(out)
	return out, nil
}

// RegisterNode implements backends.NodeRegistrar on the node: it makes
// sure this node's initiator group exists, creating it with the host's
// initiators when the configuration names no existing group.
func (b *Backend) RegisterNode(ctx context.Context, node string) error {
	ig := b.groupOf(node)
	_, err := b.c.initiatorGroup(ctx, ig)
	if err == nil {
		return nil
	}
	if err = mapErr(err, "read initiator group "+ig); !isNotFound(err) {
		return err
	}
	if b.cfg.InitiatorGroup != "" {
		return fmt.Errorf("%w: initiator group %q (initiatorGroup in the configuration) does not exist on the XMS", backends.ErrNodeNotFound, ig)
	}
	inits, err := b.Initiators()
	if err != nil {
		return fmt.Errorf("read this host's initiators: %w", err)
	}
	if len(inits) == 0 {
		return fmt.Errorf("%w: this host has no iSCSI initiator name and no FC port, so no initiator group can be made for it", backends.ErrNodeNotFound)
	}
	err = b.c.do(ctx, http.MethodPost, "initiator-groups", nil, map[string]any{"ig-name": ig}, nil)
	if err != nil && !isAPI(err, "not_unique") {
		return mapErr(err, "create initiator group "+ig)
	}
	for i, in := range inits {
		err := b.c.do(ctx, http.MethodPost, "initiators", nil, map[string]any{
			"initiator-name": fmt.Sprintf("%s-%d", ig, i+1), "ig-id": ig, "port-address": in}, nil)
		if err != nil && !isAPI(err, "not_unique") && !isAPI(err, "already_exists") {
			return mapErr(err, "add initiator "+in+" to "+ig)
		}
	}
	b.log.Info("initiator group created", zap.String("group", ig), zap.Strings("initiators", inits))
	return nil
}

// Attach implements backends.Backend with a lun-map of the volume to the
// node's initiator group.
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
	ig := b.groupOf(req.Node)
	if _, err := b.c.initiatorGroup(ctx, ig); err != nil {
		if err = mapErr(err, "read initiator group "+ig); isNotFound(err) {
			return nil, fmt.Errorf("%w: no initiator group %q on the XMS; the node plugin creates it at start-up", backends.ErrNodeNotFound, ig)
		}
		return nil, err
	}
	req.Node = ig
	done, err := backends.CheckAttach(v, req)
	if err != nil {
		return nil, err
	}
	if !done {
		if m, _ := volname.Parse(raw.Name); m.ByNode != req.ByNode && (req.ByNode || len(v.Attachments) == 0) {
			m.ByNode = req.ByNode
			if err := b.rename(ctx, raw.Name, m.Name()); err != nil {
				return nil, err
			}
			raw.Name = m.Name()
		}
		err = b.c.do(ctx, http.MethodPost, "lun-maps", nil, map[string]any{"vol-id": raw.Name, "ig-id": ig}, nil)
		if err != nil && !isAPI(err, msgMapped) {
			return nil, mapErr(err, fmt.Sprintf("map volume %s to %s", id, ig))
		}
		if raw, err = b.c.volumeByIndex(ctx, id); err != nil {
			return nil, mapErr(err, "read volume "+id)
		}
		fault.Point("xtremio.map.requested")
		b.log.Info("volume mapped", zap.String("volume", id), zap.String("group", ig))
	}
	lun, ok := raw.mappings()[ig]
	if !ok {
		return nil, fmt.Errorf("%w: volume %s has no lun-map to %s after mapping", backends.ErrUnavailable, id, ig)
	}
	return map[string]string{PublishDeviceWWN: raw.NAA, PublishLUNAddress: strconv.Itoa(lun)}, nil
}

// Detach implements backends.Backend.
func (b *Backend) Detach(ctx context.Context, id, node string) error {
	unlock, err := b.locks.Lock(ctx, "vol/"+id)
	if err != nil {
		return err
	}
	defer unlock()
	raw, _, err := b.get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	ig := b.groupOf(node)
	maps := raw.mappings()
	if _, ok := maps[ig]; !ok {
		return nil
	}
	g, err := b.c.initiatorGroup(ctx, ig)
	if err != nil {
		return mapErr(err, "read initiator group "+ig)
	}
	name := fmt.Sprintf("%d_%d_1", raw.Index, g.IGID.index())
	err = mapErr(b.c.do(ctx, http.MethodDelete, "lun-maps", url.Values{"name": {name}}, nil, nil), "unmap volume "+id+" from "+ig)
	if err != nil && !isNotFound(err) {
		return err
	}
	fault.Point("xtremio.unmap.requested")
	b.log.Info("volume unmapped", zap.String("volume", id), zap.String("group", ig))
	if m, _ := volname.Parse(raw.Name); m.ByNode && len(maps) == 1 {
		m.ByNode = false
		return b.rename(ctx, raw.Name, m.Name())
	}
	return nil
}
