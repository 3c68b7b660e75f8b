package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
)

// readName reads the id a name reservation holds: "" when there is no
// file or it holds no id (a write a crash cut short), and whether a file
// exists at all. The caller holds the name's lock.
func readName(path string) (id string, exists bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read name reservation: %w", err)
	}
	if id := strings.TrimSpace(string(data)); idRE.MatchString(id) {
		return id, true, nil
	}
	return "", true, nil
}

// writeName reserves a name for id, durably, before anything is made
// under the id. The layout is the one every version reads: a file holding
// the id. A new name is written in place (a crash leaves no file, an empty
// one or a torn one, all of which read as unreserved) and costs one fsync
// of the file and one shared fsync of names/; replacing a name file that
// exists goes through a temporary file and a rename.
func (b *Backend) writeName(path, id string, exists bool) error {
	if !exists {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(id + "\n")
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
				return err
			}
			return b.names.Sync()
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return fsutil.WriteFileAtomic(path, []byte(id+"\n"), 0o600)
}

// discard removes what an unfinished create (or an interrupted delete)
// left under id, durably, so that the name can be reserved anew. Nothing
// under such an id was ever returned to a caller: its metadata is missing.
func (b *Backend) discard(ctx context.Context, id string) error {
	l, err := b.locks.Lock(ctx, "volume "+id)
	if err != nil {
		return fmt.Errorf("lock volume %s: %w", id, err)
	}
	defer l.Close()
	if _, err := b.readMeta(id); !errors.Is(err, backends.ErrNotFound) {
		if err == nil {
			err = fmt.Errorf("volume %s gained metadata while its name was locked", id)
		}
		return err
	}
	if err := b.removeDir(id); err != nil {
		return fmt.Errorf("discard unfinished volume %s: %w", id, err)
	}
	if err := b.volumes.Sync(); err != nil {
		return fmt.Errorf("discard unfinished volume %s: %w", id, err)
	}
	return nil
}

// createMeta writes the metadata of a new volume in place; syncVolume
// makes it durable. A crash before that leaves an empty or missing file,
// which reads as an unfinished create (parseMeta).
func (b *Backend) createMeta(m *meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(b.metaPath(m.ID), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncVolume makes a new volume durable: its metadata, its image's size,
// the entries of its directory and the directory's entry in volumes/. The
// metadata goes first: on a journaling filesystem that fsync commits the
// whole create, and the others find nothing left to write.
func (b *Backend) syncVolume(id string) error {
	for _, p := range []string{b.metaPath(id), b.imagePath(id), b.volDir(id)} {
		if err := syncPath(p); err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
	}
	if err := b.volumes.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", b.volumes.Path(), err)
	}
	return nil
}

// syncRemovals makes the removals of a delete durable: of the name and of
// the volume's directory.
func (b *Backend) syncRemovals() error {
	if err := b.names.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", b.names.Path(), err)
	}
	if err := b.volumes.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", b.volumes.Path(), err)
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
