package nfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// session is one established connection to the export: the NFS client and
// the export root's file handle. The client reconnects its TCP connection
// by itself; a session is dropped (and dialled again on the next call) when
// a call fails on the transport or misses its deadline.
//
// Known cost: the client's Target starts a directory-cache sweeper
// goroutine that has no way to stop, so each session dialled leaves one
// goroutine behind (it sleeps, waking once a second). Sessions are kept
// for the process's life and redialled only after a failure, so this
// grows with server outages, not with calls.
type session struct {
	t    *nfsc.Target
	root []byte
}

func (s *session) close() { s.t.Close() }

// auth is AUTH_UNIX as root: the controller creates directories and sets
// their owner, which an export that squashes root refuses.
func (b *Backend) auth() rpc.Auth {
	host, _ := os.Hostname()
	if len(host) > 255 {
		host = host[:255]
	}
	return rpc.NewAuthUnix(host, 0, 0).Auth()
}

// dial mounts the export over the MOUNT protocol, opens the NFS
// connection and makes sure the directories the backend keeps below the
// export exist.
func (b *Backend) dial() (*session, error) {
	auth := b.auth()
	var mc *rpc.Client
	var err error
	if b.cfg.MountPort != 0 {
		mc, err = nfsc.DialServiceAtPort(b.cfg.Server, b.cfg.MountPort)
	} else {
		mc, err = nfsc.DialService(b.cfg.Server, rpc.Mapping{Prog: nfsc.MountProg, Vers: nfsc.MountVers, Prot: rpc.IPProtoTCP})
	}
	if err != nil {
		return nil, b.rpcErr("MOUNT", b.address(b.cfg.MountPort), err)
	}
	root, err := mnt(mc, auth, b.cfg.Export)
	mc.Close()
	if err != nil {
		return nil, b.rpcErr("MOUNT", b.address(b.cfg.MountPort), err)
	}
	var nc *rpc.Client
	if b.cfg.Port != 0 {
		nc, err = nfsc.DialServiceAtPort(b.cfg.Server, b.cfg.Port)
	} else {
		nc, err = nfsc.DialService(b.cfg.Server, rpc.Mapping{Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Prot: rpc.IPProtoTCP})
	}
	if err != nil {
		return nil, b.rpcErr("NFS connect", b.address(b.cfg.Port), err)
	}
	// An entry timeout of 0 turns the client's directory cache off: the
	// export is shared with other controllers.
	t, err := nfsc.NewTargetWithClient(nc, auth, root, b.cfg.Export, 0)
	if err != nil {
		nc.Close()
		return nil, b.rpcErr("FSINFO", b.address(b.cfg.Port), err)
	}
	s := &session{t: t, root: root}
	dirs := []string{}
	if b.base() != "" {
		parts := strings.Split(b.base(), "/")
		for i := range parts {
			dirs = append(dirs, strings.Join(parts[:i+1], "/"))
		}
	}
	// Look before making: a node's plugin only reads, and an export that
	// squashes the nodes' root refuses MKDIR even of a directory that
	// exists.
	for _, d := range append(dirs, b.rel(metaDirName)) {
		_, _, err := t.Lookup(d)
		if errors.Is(err, os.ErrNotExist) {
			_, err = t.Mkdir(d, 0o755)
		}
		if err != nil && !errors.Is(err, os.ErrExist) {
			s.close()
			return nil, b.rpcErr("MKDIR "+d, b.address(b.cfg.Port), err)
		}
	}
	return s, nil
}

// mnt asks the MOUNT service for the export's root file handle. The call
// is made here rather than through the client's Mount type so that the
// NFS connection can go to a configured port instead of the portmapper's.
func mnt(c *rpc.Client, auth rpc.Auth, export string) ([]byte, error) {
	type mountArgs struct {
		rpc.Header
		Dirpath string
	}
	res, err := c.Call(&mountArgs{rpc.Header{Rpcvers: 2, Prog: nfsc.MountProg, Vers: nfsc.MountVers, Proc: nfsc.MountProc3MNT, Cred: auth, Verf: rpc.AuthNull}, export})
	if err != nil {
		return nil, err
	}
	stat, err := xdr.ReadUint32(res)
	if err != nil {
		return nil, err
	}
	switch stat {
	case nfsc.MNT3Ok:
		return xdr.ReadOpaque(res)
	case nfsc.MNT3ErrPerm, nfsc.MNT3ErrAcces:
		return nil, &mountErr{stat, os.ErrPermission}
	case nfsc.MNT3ErrNoEnt:
		return nil, &mountErr{stat, os.ErrNotExist}
	}
	return nil, &mountErr{stat, nil}
}

type mountErr struct {
	stat uint32
	err  error
}

func (e *mountErr) Error() string {
	if e.err != nil {
		return fmt.Sprintf("MOUNT status %d: %v", e.stat, e.err)
	}
	return fmt.Sprintf("MOUNT status %d", e.stat)
}
func (e *mountErr) Unwrap() error { return e.err }

// do runs fn with the session, dialling one first if needed, and returns
// when fn does or when ctx ends, whichever comes first: the client has no
// deadlines of its own and retries a silent server for a long time. A
// call abandoned at the deadline closes its session, which makes the
// client give up within seconds.
func (b *Backend) do(ctx context.Context, op string, fn func(s *session) error) error {
	type result struct {
		s   *session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := b.session()
		if err == nil {
			err = fn(s)
		}
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && transient(r.err) && r.s != nil {
			b.drop(r.s)
		}
		if r.err != nil && r.s != nil {
			return b.rpcErr(op, b.address(b.cfg.Port), r.err)
		}
		return r.err
	case <-ctx.Done():
		// The server did not answer in time: the session goes now, so the
		// next call dials afresh instead of queueing behind this one.
		b.dropCurrent()
		go func() {
			if r := <-done; r.s != nil {
				b.drop(r.s)
			}
		}()
		return fmt.Errorf("nfs server %s: %s: no answer before the deadline (%v): %w", b.address(b.cfg.Port), op, ctx.Err(), backends.ErrUnavailable)
	}
}

func (b *Backend) session() (*session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess != nil {
		return b.sess, nil
	}
	s, err := b.dial()
	if err != nil {
		return nil, err
	}
	b.sess = s
	return s, nil
}

// drop forgets s if it is still the current session and closes it.
func (b *Backend) drop(s *session) {
	b.mu.Lock()
	if b.sess == s {
		b.sess = nil
	}
	b.mu.Unlock()
	s.close()
}

// dropCurrent drops whatever session is current.
func (b *Backend) dropCurrent() {
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s != nil {
		b.drop(s)
	}
}

// Close releases the connection to the server.
func (b *Backend) Close() error {
	b.mu.Lock()
	s := b.sess
	b.sess = nil
	b.mu.Unlock()
	if s != nil {
		s.close()
	}
	return nil
}

// transient reports whether err came from the transport (the server went
// away, refused the connection, a handle went stale) rather than from an
// answer.
func transient(err error) bool {
	var ne net.Error
	var nerr *nfsc.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &nerr):
		return nerr.ErrorNum == nfsc.NFS3ErrStale || nerr.ErrorNum == nfsc.NFS3ErrBadHandle
	}
	// The client's own words when it gave up reconnecting.
	return err.Error() == "disconnected"
}

// rpcErr gives err the backends error class the services map to a gRPC
// code, with the server's address and the call that failed, and what an
// operator can change on the export where that is the fix.
func (b *Backend) rpcErr(op, addr string, err error) error {
	var nerr *nfsc.Error
	var merr *mountErr
	class := error(nil)
	hint := ""
	switch {
	case errors.Is(err, backends.ErrUnavailable), errors.Is(err, backends.ErrPermission),
		errors.Is(err, backends.ErrNotFound), errors.Is(err, backends.ErrCapacity):
		return err // classified already
	case transient(err):
		class = backends.ErrUnavailable
		hint = "; is the NFS server running and reachable from the controller?"
	case errors.As(err, &merr) && errors.Is(err, os.ErrPermission):
		class = backends.ErrPermission
		hint = fmt.Sprintf("; the server refuses to export %s to this host: add this host to the export's clients", b.cfg.Export)
	case errors.As(err, &merr) && errors.Is(err, os.ErrNotExist):
		class = backends.ErrNotFound
		hint = fmt.Sprintf("; the server does not export %s: check the backend's export", b.cfg.Export)
	case errors.Is(err, os.ErrPermission), errors.As(err, &nerr) && nerr.ErrorNum == nfsc.NFS3ErrAcces:
		class = backends.ErrPermission
		hint = "; the controller works as root over NFS: export it with no_root_squash (Linux exports(5); Squash = No_Root_Squash in nfs-ganesha)"
	case errors.As(err, &nerr) && nerr.ErrorNum == nfsc.NFS3ErrROFS:
		class = backends.ErrPermission
		hint = "; the export is read-only: export it rw (Access_Type = RW in nfs-ganesha)"
	case errors.As(err, &nerr) && (nerr.ErrorNum == nfsc.NFS3ErrNoSpc || nerr.ErrorNum == nfsc.NFS3ErrDQuot):
		class = backends.ErrCapacity
	case errors.Is(err, os.ErrNotExist):
		class = backends.ErrNotFound
	case strings.HasPrefix(err.Error(), "rpc: PROG_UNAVAIL"), strings.HasPrefix(err.Error(), "rpc: PROG_MISMATCH"):
		class = backends.ErrUnavailable
		hint = "; that port does not serve NFSv3 (check port and mountPort)"
	}
	if class == nil {
		return fmt.Errorf("nfs server %s: %s: %w", addr, op, err)
	}
	b.log.Debug("nfs call failed", zap.String("op", op), zap.String("server", addr), zap.Error(err))
	return fmt.Errorf("nfs server %s: %s: %v%s: %w", addr, op, err, hint, class)
}

// fsstat is NFSv3 FSSTAT on the export root, which the client lacks.
type fsstat struct {
	Attr                   nfsc.PostOpAttr
	TBytes, FBytes, ABytes uint64
	TFiles, FFiles, AFiles uint64
	Invarsec               uint32
}

const procFSStat = 18

func (s *session) fsstat(auth rpc.Auth) (*fsstat, error) {
	type args struct {
		rpc.Header
		FH []byte
	}
	res, err := s.t.Call(&args{rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Proc: procFSStat, Cred: auth, Verf: rpc.AuthNull}, s.root})
	if err != nil {
		return nil, err
	}
	st, err := xdr.ReadUint32(res)
	if err != nil {
		return nil, err
	}
	if err := nfsc.NFS3Error(st); err != nil {
		return nil, err
	}
	out := new(fsstat)
	if err := xdr.Read(res, out); err != nil {
		return nil, fmt.Errorf("decode FSSTAT answer: %w", err)
	}
	return out, nil
}

// readFile reads a small file whole.
func (s *session) readFile(p string) ([]byte, error) {
	f, err := s.t.Open(p)
	if err != nil {
		return nil, err
	}
	var out []byte
	buf := make([]byte, 64<<10)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) || err == nil && n == 0 {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(out) > 1<<20 {
			return nil, fmt.Errorf("%s is larger than a volume record can be", p)
		}
	}
}

// writeFileAtomic writes data to a temporary file beside p, commits it to
// stable storage and renames it over p, so that a reader sees the old
// record or the new one, never a part.
func (s *session) writeFileAtomic(p, tmp string, data []byte) error {
	f, err := s.t.OpenFile(tmp, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		s.discard(tmp, err)
		return err
	}
	if err := f.Close(); err != nil { // COMMIT
		s.discard(tmp, err)
		return err
	}
	return s.t.Rename(tmp, p)
}

// discard removes a temporary file after a failed write, unless the
// connection itself failed: then the removal would only wait out the
// client's reconnect attempts, and Delete sweeps the file later.
func (s *session) discard(tmp string, cause error) {
	if !transient(cause) {
		_ = s.t.Remove(tmp)
	}
}
