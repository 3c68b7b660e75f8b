package nfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"go.uber.org/zap"
)

// copyTree copies the directory tree at src to dst (both relative to the
// export root) through the client: directories, regular files and
// symbolic links, with their modes and owners. NFSv3 has no server-side
// copy, so the bytes travel through the controller. dst must not exist.
func (b *Backend) copyTree(s *session, src, dst string) error {
	attr, err := s.t.Getattr(src)
	if err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	if _, err := s.t.Mkdir(dst, os.FileMode(attr.FileMode&0o777)); err != nil {
		return fmt.Errorf("mkdir %s: %w", dst, err)
	}
	if err := b.copyOwner(s, dst, attr); err != nil {
		return err
	}
	entries, err := s.t.ReadDirPlus(src)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", src, err)
	}
	for _, e := range entries {
		if !e.Attr.IsSet {
			return fmt.Errorf("%s/%s: the server sent no attributes", src, e.FileName)
		}
		from, to := path.Join(src, e.FileName), path.Join(dst, e.FileName)
		switch a := e.Attr.Attr; a.Type {
		case nfsc.NF3Dir:
			err = b.copyTree(s, from, to)
		case nfsc.NF3Reg:
			if err = copyFile(s, from, to, os.FileMode(a.FileMode&0o777)); err == nil {
				err = b.copyOwner(s, to, &a)
			}
		case nfsc.NF3Lnk:
			var f *nfsc.File
			var target string
			if f, err = s.t.Open(from); err == nil {
				if target, err = f.Readlink(); err == nil {
					err = s.t.Symlink(target, to)
				}
			}
		default:
			// Devices, sockets and FIFOs carry no data of their own.
			b.log.Warn("clone skips a special file", zap.String("path", from), zap.Uint32("type", a.Type))
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", from, err)
		}
	}
	return nil
}

func (b *Backend) copyOwner(s *session, p string, a *nfsc.Fattr) error {
	_, fh, err := s.t.Lookup(p)
	if err != nil {
		return err
	}
	_, err = s.t.SetAttr(fh, nfsc.Sattr3{
		Mode: nfsc.SetMode{SetIt: true, Mode: a.FileMode & 0o7777},
		UID:  nfsc.SetUID{SetIt: true, UID: a.UID},
		GID:  nfsc.SetUID{SetIt: true, UID: a.GID},
	})
	return err
}

func copyFile(s *session, from, to string, mode os.FileMode) error {
	in, err := s.t.Open(from)
	if err != nil {
		return err
	}
	out, err := s.t.OpenFile(to, mode)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, rerr := in.ReadAt(buf, off)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || rerr == nil && n == 0 {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	return out.Close() // COMMIT
}
