package nfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Snapshots are whole copies of a volume's tree, made through the client
// like clones, kept in <subDir>/.csi-libstorage/snapshots/<id> with a
// record <id>.json beside them. They exist only when the configuration
// says snapshots: true; Build then returns a backend with the Snapshotter
// ability.

const snapDirName = "snapshots"

// snapPrefix starts a snapshot id, so snapshot and volume ids never meet.
const snapPrefix = "snap-"

var snapIDRE = regexp.MustCompile(`^snap-(?:[a-z0-9]+(?:-[a-z0-9]+)*-)?[0-9a-f]{16}$`)

func snapID(name string) string { return snapPrefix + strings.TrimPrefix(dirName(name), dirPrefix) }

func validSnapID(id string) bool { return len(id) <= 80 && snapIDRE.MatchString(id) }

type snapRecord struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	SizeBytes int64  `json:"sizeBytes"`
	Created   int64  `json:"created"` // unix seconds
}

// Snapshotting is an NFS backend with snapshots configured.
type Snapshotting struct{ *Backend }

// Build returns the backend a configuration asks for: with snapshots: true,
// one that can take snapshots.
func Build(c Config, o Options) (backends.Backend, error) {
	b, err := New(c, o)
	if err != nil {
		return nil, err
	}
	if c.Snapshots {
		return Snapshotting{b}, nil
	}
	return b, nil
}

func (b *Backend) snapPath(elem ...string) string {
	return b.rel(append([]string{metaDirName, snapDirName}, elem...)...)
}

func (b *Backend) readSnap(s *session, id string) (*snapRecord, error) {
	raw, err := s.readFile(b.snapPath(id + ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := new(snapRecord)
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, fmt.Errorf("snapshot record %s is damaged: %v", b.snapPath(id+".json"), err)
	}
	return r, nil
}

func snapshot(id string, r *snapRecord) *backends.Snapshot {
	return &backends.Snapshot{ID: id, SourceID: r.Source, Name: r.Name, SizeBytes: r.SizeBytes, CreatedAt: r.Created, Ready: true}
}

// CreateSnapshot implements backends.Snapshotter: the record first, then
// the copy into a scratch directory renamed into place, so a retry after
// a failure finds the record and copies again.
func (s Snapshotting) CreateSnapshot(ctx context.Context, sourceID, name string, _ map[string]string) (*backends.Snapshot, error) {
	b := s.Backend
	if !validID(sourceID) {
		return nil, fmt.Errorf("source volume %s: %w", sourceID, backends.ErrNotFound)
	}
	id := snapID(name)
	var out *backends.Snapshot
	err := b.do(ctx, "snapshot "+id, func(ss *session) error {
		if _, err := ss.t.Mkdir(b.snapPath(), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		have, err := b.readSnap(ss, id)
		if err != nil {
			return err
		}
		if have == nil {
			src, err := b.readRecord(ss, sourceID)
			if err != nil {
				return err
			}
			if src == nil {
				return fmt.Errorf("source volume %s: %w", sourceID, backends.ErrNotFound)
			}
			have = &snapRecord{Name: name, Source: sourceID, SizeBytes: src.CapacityBytes, Created: time.Now().Unix()}
			if err := b.writeJSON(ss, b.snapPath(), id+".json", have); err != nil {
				return err
			}
		}
		switch {
		case have.Name != name:
			return fmt.Errorf("snapshot id %s belongs to snapshot %q (a hash collision): %w", id, have.Name, backends.ErrAlreadyExists)
		case have.Source != sourceID:
			return fmt.Errorf("snapshot %q exists of volume %s, not %s: %w", name, have.Source, sourceID, backends.ErrAlreadyExists)
		}
		if err := b.copyInto(ss, b.rel(sourceID), b.snapPath(id), b.snapPath(".copy-"+id)); err != nil {
			return err
		}
		out = snapshot(id, have)
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.log.Info("snapshot created", zap.String("snapshot", id), zap.String("source", sourceID))
	return out, nil
}

// DeleteSnapshot implements backends.Snapshotter.
func (s Snapshotting) DeleteSnapshot(ctx context.Context, id string) error {
	b := s.Backend
	if !validSnapID(id) {
		return nil
	}
	return b.do(ctx, "delete snapshot "+id, func(ss *session) error {
		if err := ss.t.RemoveAll(b.snapPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := ss.t.Remove(b.snapPath(id + ".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		err := b.sweepTemporary(ss, b.snapPath(), id, ".copy-"+id)
		if errors.Is(err, os.ErrNotExist) {
			return nil // no snapshot was ever taken
		}
		return err
	})
}

// ListSnapshots implements backends.Snapshotter. A snapshot whose copy is
// not complete yet is left out.
func (s Snapshotting) ListSnapshots(ctx context.Context) ([]*backends.Snapshot, error) {
	b := s.Backend
	var out []*backends.Snapshot
	err := b.do(ctx, "list snapshots", func(ss *session) error {
		out = nil
		entries, err := ss.t.ReadDirPlus(b.snapPath())
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		dirs := map[string]bool{}
		for _, e := range entries {
			dirs[e.FileName] = e.IsDir()
		}
		for _, e := range entries {
			id, ok := strings.CutSuffix(e.FileName, ".json")
			if !ok || !validSnapID(id) || !dirs[id] {
				continue
			}
			r, err := b.readSnap(ss, id)
			if err != nil {
				return err
			}
			if r != nil {
				out = append(out, snapshot(id, r))
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}
