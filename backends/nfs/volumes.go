package nfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// record is what the backend keeps about a volume, in
// <subDir>/.csi-libstorage/<dir>.json. It is written before the directory
// is made, so a directory without a record is not one of this backend's
// volumes (it may be one that was retained after deletion) and is never
// adopted by a create.
type record struct {
	Name string `json:"name"`
	// CapacityBytes is the capacity the volume was asked for. NFS cannot
	// enforce it; it is what the CO is told and what a repeated create is
	// compared against.
	CapacityBytes int64             `json:"capacityBytes"`
	Parameters    map[string]string `json:"parameters,omitempty"`
	Modes         []string          `json:"modes,omitempty"`
	// SourceVolume and SourceSnapshot are what this volume was copied
	// from, if anything.
	SourceVolume   string `json:"sourceVolume,omitempty"`
	SourceSnapshot string `json:"sourceSnapshot,omitempty"`
	Created        int64  `json:"created"` // unix seconds
}

func (b *Backend) recordPath(id string) string { return b.rel(metaDirName, id+".json") }

func (b *Backend) volume(id string, r *record) *backends.Volume {
	v := &backends.Volume{ID: id, Name: r.Name, CapacityBytes: r.CapacityBytes, Parameters: maps.Clone(r.Parameters), SourceVolume: r.SourceVolume, SourceSnapshot: r.SourceSnapshot}
	for _, m := range r.Modes {
		if mode, ok := backends.ParseAccessMode(m); ok {
			v.Modes = append(v.Modes, mode)
		}
	}
	return v
}

// readRecord returns the volume's record, or nil if it has none.
func (b *Backend) readRecord(s *session, id string) (*record, error) {
	raw, err := s.readFile(b.recordPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := new(record)
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, fmt.Errorf("volume record %s is damaged: %v", b.recordPath(id), err)
	}
	return r, nil
}

func (b *Backend) writeRecord(s *session, id string, r *record) error {
	return b.writeJSON(s, b.rel(metaDirName), id+".json", r)
}

// writeJSON writes v as dir/name atomically, through a temporary file of
// a random name that a sweep can find (".<name without .json>.tmp-…").
func (b *Backend) writeJSON(s *session, dir, name string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var sfx [6]byte
	if _, err := rand.Read(sfx[:]); err != nil {
		return err
	}
	tmp := path.Join(dir, "."+strings.TrimSuffix(name, ".json")+".tmp-"+hex.EncodeToString(sfx[:]))
	return s.writeFileAtomic(path.Join(dir, name), tmp, raw)
}

// compatible reports why an existing volume cannot answer req, or "".
func compatible(r *record, req backends.CreateRequest) string {
	switch {
	case r.Name != req.Name:
		return fmt.Sprintf("its directory name belongs to volume %q (a hash collision)", r.Name)
	case req.RequiredBytes > 0 && r.CapacityBytes < req.RequiredBytes:
		return fmt.Sprintf("it was created with %d bytes, less than the %d now required", r.CapacityBytes, req.RequiredBytes)
	case req.LimitBytes > 0 && r.CapacityBytes > req.LimitBytes:
		return fmt.Sprintf("it was created with %d bytes, more than the limit of %d", r.CapacityBytes, req.LimitBytes)
	case r.SourceVolume != req.SourceVolume || r.SourceSnapshot != req.SourceSnapshot:
		return fmt.Sprintf("it was created from %q, not %q", r.SourceVolume+r.SourceSnapshot, req.SourceVolume+req.SourceSnapshot)
	case !maps.Equal(r.Parameters, req.Parameters) && !(len(r.Parameters) == 0 && len(req.Parameters) == 0):
		return fmt.Sprintf("it was created with parameters %v, not %v", r.Parameters, req.Parameters)
	}
	return ""
}

// Create implements backends.Backend. The steps are ordered so that a
// retry after a crash or a lost answer at any point completes the volume:
// the record first (written atomically), then the directory, then its
// owner and mode. A record that another plugin wrote at the same moment
// wins or loses by the record read back after writing.
func (b *Backend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	if req.Block {
		return nil, fmt.Errorf("an NFS volume is a directory and has no block access: %w", backends.ErrInvalid)
	}
	if req.SourceSnapshot != "" && !b.cfg.Snapshots {
		return nil, fmt.Errorf("backend %s has snapshots only with snapshots: true in its configuration: %w", b.cfg.Name, backends.ErrUnsupported)
	}
	if req.SourceSnapshot != "" && !validSnapID(req.SourceSnapshot) {
		return nil, fmt.Errorf("source snapshot %s: %w", req.SourceSnapshot, backends.ErrNotFound)
	}
	if req.SourceVolume != "" && !b.cfg.Clone {
		return nil, fmt.Errorf("backend %s copies volumes only with clone: true in its configuration: %w", b.cfg.Name, backends.ErrUnsupported)
	}
	if req.SourceVolume != "" && !validID(req.SourceVolume) {
		return nil, fmt.Errorf("source volume %s: %w", req.SourceVolume, backends.ErrNotFound)
	}
	id := dirName(req.Name)
	capBytes := req.RequiredBytes
	if capBytes == 0 {
		capBytes = req.LimitBytes
	}
	want := &record{Name: req.Name, CapacityBytes: capBytes, Parameters: maps.Clone(req.Parameters), SourceVolume: req.SourceVolume, SourceSnapshot: req.SourceSnapshot, Created: time.Now().Unix()}
	for _, m := range req.Modes {
		want.Modes = append(want.Modes, m.String())
	}
	var out *backends.Volume
	err := b.do(ctx, "create "+id, func(s *session) error {
		have, err := b.readRecord(s, id)
		if err != nil {
			return err
		}
		if have == nil {
			if req.SourceVolume != "" {
				if src, err := b.readRecord(s, req.SourceVolume); err != nil {
					return err
				} else if src == nil {
					return fmt.Errorf("source volume %s: %w", req.SourceVolume, backends.ErrNotFound)
				}
			}
			if req.SourceSnapshot != "" {
				if src, err := b.readSnap(s, req.SourceSnapshot); err != nil {
					return err
				} else if src == nil {
					return fmt.Errorf("source snapshot %s: %w", req.SourceSnapshot, backends.ErrNotFound)
				}
			}
			if _, _, err := s.t.Lookup(b.rel(id)); err == nil {
				return fmt.Errorf("directory %s exists on the export but is no volume of this plugin (a volume retained after deletion, or someone else's); move it away or pick another name: %w",
					b.rel(id), backends.ErrAlreadyExists)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := b.writeRecord(s, id, want); err != nil {
				return err
			}
			if have, err = b.readRecord(s, id); err != nil {
				return err
			} else if have == nil {
				return fmt.Errorf("volume record %s vanished right after it was written (a concurrent delete?): %w", b.recordPath(id), backends.ErrUnavailable)
			}
		}
		if why := compatible(have, req); why != "" {
			return fmt.Errorf("volume %q exists and %s: %w", req.Name, why, backends.ErrAlreadyExists)
		}
		switch {
		case have.SourceVolume != "":
			err = b.copyInto(s, b.rel(have.SourceVolume), b.rel(id), b.rel(metaDirName, ".clone-"+id))
		case have.SourceSnapshot != "":
			err = b.copyInto(s, b.snapPath(have.SourceSnapshot), b.rel(id), b.rel(metaDirName, ".clone-"+id))
		}
		if err != nil {
			return err
		}
		if err := b.makeDir(s, id); err != nil {
			return err
		}
		out = b.volume(id, have)
		return nil
	})
	if err != nil {
		return nil, err
	}
	b.log.Info("volume created", zap.String("volume", id), zap.String("name", req.Name), zap.Int64("capacityBytes", out.CapacityBytes))
	return out, nil
}

// copyInto copies the tree at src to dst through a scratch directory that
// is renamed into place: a directory at dst is always a whole copy, and a
// retry after a failure part-way starts the copy again. An existing dst is
// done.
func (b *Backend) copyInto(s *session, src, dst, scratch string) error {
	if _, _, err := s.t.Lookup(dst); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := s.t.RemoveAll(scratch); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := b.copyTree(s, src, scratch); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("copy %s to %s: %v: %w", src, dst, err, backends.ErrNotFound)
		}
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return s.t.Rename(scratch, dst)
}

// makeDir makes the volume's directory, if missing, and gives it the
// configured owner and mode.
func (b *Backend) makeDir(s *session, id string) error {
	p := b.rel(id)
	if _, err := s.t.Mkdir(p, os.FileMode(b.mode&0o777)); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	_, fh, err := s.t.Lookup(p)
	if err != nil {
		return err
	}
	_, err = s.t.SetAttr(fh, nfsc.Sattr3{
		Mode: nfsc.SetMode{SetIt: true, Mode: b.mode},
		UID:  nfsc.SetUID{SetIt: true, UID: b.cfg.UID},
		GID:  nfsc.SetUID{SetIt: true, UID: b.cfg.GID},
	})
	return err
}

// Delete implements backends.Backend, per onDelete. The directory goes
// first and the record last, so a retry after a crash in between finds the
// record and finishes.
func (b *Backend) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	var archived string
	err := b.do(ctx, "delete "+id, func(s *session) error {
		r, err := b.readRecord(s, id)
		if err != nil {
			return err
		}
		if r == nil {
			return nil // gone, or never this backend's: nothing to do
		}
		switch b.cfg.OnDelete {
		case OnDeleteDelete:
			if err := s.t.RemoveAll(b.rel(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		case OnDeleteArchive:
			name, err := archiveName(id, time.Now())
			if err != nil {
				return err
			}
			if err := s.t.Rename(b.rel(id), b.rel(name)); err == nil {
				archived = name
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		case OnDeleteRetain:
		}
		if err := s.t.Remove(b.recordPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return b.sweepTemporary(s, b.rel(metaDirName), id, ".clone-"+id)
	})
	if err != nil {
		return err
	}
	b.log.Info("volume deleted", zap.String("volume", id), zap.String("onDelete", b.cfg.OnDelete), zap.String("archivedAs", archived))
	return nil
}

// sweepTemporary removes what a failed connection left of volume or
// snapshot id in dir: temporary records whose write was cut off, and the
// partial copy of a clone or snapshot (scratch).
func (b *Backend) sweepTemporary(s *session, dir, id, scratch string) error {
	entries, err := s.t.ReadDirPlus(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		var err error
		switch {
		case strings.HasPrefix(e.FileName, "."+id+".tmp-"):
			err = s.t.Remove(path.Join(dir, e.FileName))
		case e.FileName == scratch:
			err = s.t.RemoveAll(path.Join(dir, e.FileName))
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Get implements backends.Backend.
func (b *Backend) Get(ctx context.Context, id string) (*backends.Volume, error) {
	if !validID(id) {
		return nil, fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
	}
	var v *backends.Volume
	err := b.do(ctx, "get "+id, func(s *session) error {
		r, err := b.readRecord(s, id)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
		}
		v = b.volume(id, r)
		return nil
	})
	return v, err
}

// List implements backends.Backend.
func (b *Backend) List(ctx context.Context) ([]*backends.Volume, error) {
	var out []*backends.Volume
	err := b.do(ctx, "list volumes", func(s *session) error {
		out = nil
		entries, err := s.t.ReadDirPlus(b.rel(metaDirName))
		if err != nil {
			return err
		}
		for _, e := range entries {
			id, ok := strings.CutSuffix(e.FileName, ".json")
			if !ok || !validID(id) {
				continue
			}
			r, err := b.readRecord(s, id)
			if err != nil {
				return err
			}
			if r != nil { // deleted since the listing
				out = append(out, b.volume(id, r))
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// Capacity implements backends.Backend: the bytes the server says are
// available to the plugin's user on the export (FSSTAT abytes). Volumes
// share that space; their recorded capacities are not reserved from it.
func (b *Backend) Capacity(ctx context.Context, _ map[string]string) (int64, error) {
	var n int64
	err := b.do(ctx, "FSSTAT", func(s *session) error {
		st, err := s.fsstat(b.auth())
		if err != nil {
			return err
		}
		n = int64(min(st.ABytes, 1<<62))
		return nil
	})
	return n, err
}

// Probe implements backends.Backend: the export answers FSSTAT.
func (b *Backend) Probe(ctx context.Context) error {
	_, err := b.Capacity(ctx, nil)
	return err
}
