package nfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/ganesha"
	"google.golang.org/grpc/codes"
)

// newBackend starts nfs-ganesha and a backend on its export.
func newBackend(t *testing.T, onDelete string, o ganesha.Options) (*Backend, *ganesha.Server) {
	t.Helper()
	srv := ganesha.Start(t, harness.TempDir(t), o)
	b := backendOn(t, srv, onDelete)
	return b, srv
}

func backendOn(t *testing.T, srv *ganesha.Server, onDelete string) *Backend {
	t.Helper()
	b, err := New(Config{Name: "shared", Server: ganesha.Host, Export: srv.Export, SubDir: "csi/vols",
		Port: srv.Port, MountPort: srv.MountPort, OnDelete: onDelete, UID: 1000, GID: 2000, Mode: "0750"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestVolumesOnGanesha(t *testing.T) {
	b, srv := newBackend(t, OnDeleteDelete, ganesha.Options{})
	req := backends.CreateRequest{Name: "pvc-1", RequiredBytes: 1 << 30, Parameters: map[string]string{"backend": "shared"},
		Modes: []backends.AccessMode{backends.MultiNodeMultiWriter}}
	v, err := b.Create(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if v.ID != dirName("pvc-1") || v.CapacityBytes != 1<<30 || v.Name != "pvc-1" {
		t.Fatalf("created %+v", v)
	}
	// What the server made, seen on its disk: the directory with the
	// configured owner and mode, and the record beside it.
	dir := filepath.Join(srv.Export, "csi/vols", v.ID)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscallStat)
	if fi.Mode().Perm() != 0o750 || !fi.IsDir() || st.Uid != 1000 || st.Gid != 2000 {
		t.Fatalf("directory %s: mode %v uid %d gid %d", dir, fi.Mode(), st.Uid, st.Gid)
	}
	raw, err := os.ReadFile(filepath.Join(srv.Export, "csi/vols", metaDirName, v.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil || r.Name != "pvc-1" || r.CapacityBytes != 1<<30 || r.Parameters["backend"] != "shared" {
		t.Fatalf("record %s (%v)", raw, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Repeats: compatible ones return the same volume, others ALREADY_EXISTS.
	for _, c := range []struct {
		name string
		req  backends.CreateRequest
		code codes.Code
	}{
		{"same request", req, codes.OK},
		{"smaller requirement", backends.CreateRequest{Name: "pvc-1", RequiredBytes: 1 << 20, Parameters: req.Parameters}, codes.OK},
		{"larger requirement", backends.CreateRequest{Name: "pvc-1", RequiredBytes: 2 << 30, Parameters: req.Parameters}, codes.AlreadyExists},
		{"limit below", backends.CreateRequest{Name: "pvc-1", LimitBytes: 1 << 20, Parameters: req.Parameters}, codes.AlreadyExists},
		{"other parameters", backends.CreateRequest{Name: "pvc-1", RequiredBytes: 1 << 30}, codes.AlreadyExists},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := b.Create(ctx(t), c.req)
			if grpcerr.Code(err) != c.code && !(c.code == codes.OK && err == nil) {
				t.Fatalf("code %v (%v), want %v", grpcerr.Code(err), err, c.code)
			}
			if err == nil && (got.ID != v.ID || got.CapacityBytes != v.CapacityBytes) {
				t.Fatalf("repeat gave %+v, first %+v", got, v)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data")); err != nil || string(b) != "kept" {
		t.Fatalf("a repeated create touched the data: %q %v", b, err)
	}

	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "pvc-2"}); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx(t))
	if err != nil || len(list) != 2 || list[0].ID > list[1].ID {
		t.Fatalf("list %v %v", list, err)
	}
	got, err := b.Get(ctx(t), v.ID)
	if err != nil || got.Name != "pvc-1" || len(got.Modes) != 1 || got.Modes[0] != backends.MultiNodeMultiWriter {
		t.Fatalf("get %+v %v", got, err)
	}
	for _, id := range []string{"csi-0123456789abcdef", "../etc", "archived-x"} {
		if _, err := b.Get(ctx(t), id); !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("get %q: %v, want not found", id, err)
		}
	}

	n, err := b.Capacity(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var fs syscallStatfs
	if err := statfs(srv.Export, &fs); err != nil {
		t.Fatal(err)
	}
	// FSSTAT's abytes is the export's filesystem's available space, which
	// other tests change as they run: compare within 1 GiB.
	if avail := int64(fs.Bavail) * int64(fs.Bsize); n <= 0 || n > avail+(1<<30) || n < avail-(1<<30) {
		t.Fatalf("capacity %d; statfs of the export says %d", n, avail)
	}

	if err := b.Delete(ctx(t), v.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx(t), v.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("onDelete delete left %s: %v", dir, err)
	}
	if _, err := b.Get(ctx(t), v.ID); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func TestOnDelete(t *testing.T) {
	srv := ganesha.Start(t, harness.TempDir(t), ganesha.Options{})
	for _, mode := range []string{OnDeleteArchive, OnDeleteRetain} {
		t.Run(mode, func(t *testing.T) {
			b := backendOn(t, srv, mode)
			base := filepath.Join(srv.Export, "csi/vols")
			// Two volumes of the same name, one after the other: with
			// archive, both archives stay.
			for round := 0; round < 2; round++ {
				v, err := b.Create(ctx(t), backends.CreateRequest{Name: "job-" + mode})
				if grpcerr.Code(err) == codes.AlreadyExists && mode == OnDeleteRetain && round == 1 {
					// The retained directory is not adopted by a new volume.
					if !strings.Contains(err.Error(), "retained") {
						t.Fatalf("refusal does not say why: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(base, v.ID, "f"), []byte(strconv.Itoa(round)), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := b.Delete(ctx(t), v.ID); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Get(ctx(t), v.ID); !errors.Is(err, backends.ErrNotFound) {
					t.Fatalf("get after delete: %v", err)
				}
				_, err = os.Stat(filepath.Join(base, v.ID))
				if mode == OnDeleteRetain && err != nil || mode == OnDeleteArchive && !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("onDelete %s: directory after delete: %v", mode, err)
				}
			}
			archives, _ := filepath.Glob(filepath.Join(base, "archived-"+dirName("job-"+mode)+"-*"))
			if len(archives) != 2 {
				t.Fatalf("archives %v, want two", archives)
			}
			for i, a := range archives {
				if b, err := os.ReadFile(filepath.Join(a, "f")); err != nil || len(b) != 1 {
					t.Fatalf("archive %d lost its data: %q %v", i, b, err)
				}
			}
		})
	}
}

// TestCreateAfterLostAnswer: the CO never saw the answer (or the plugin
// died) after the record was written but before the directory was made;
// the retry finishes the volume.
func TestCreateAfterLostAnswer(t *testing.T) {
	b, srv := newBackend(t, OnDeleteDelete, ganesha.Options{})
	req := backends.CreateRequest{Name: "lost", RequiredBytes: 5 << 20}
	id := dirName("lost")
	err := b.do(ctx(t), "test", func(s *session) error {
		return b.writeRecord(s, id, &record{Name: "lost", CapacityBytes: 5 << 20})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.Export, "csi/vols", id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory already there: %v", err)
	}
	v, err := b.Create(ctx(t), req)
	if err != nil || v.ID != id {
		t.Fatalf("retry: %+v %v", v, err)
	}
	if fi, err := os.Stat(filepath.Join(srv.Export, "csi/vols", id)); err != nil || !fi.IsDir() {
		t.Fatalf("the retry did not make the directory: %v", err)
	}
	tmps, _ := filepath.Glob(filepath.Join(srv.Export, "csi/vols", metaDirName, ".*tmp*"))
	if len(tmps) != 0 {
		t.Fatalf("temporary records left: %v", tmps)
	}
}

// TestUnreachable: a server that is not there, or goes away after the
// backend connected, is UNAVAILABLE with the address and the call.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b, err := New(Config{Name: "x", Server: "127.0.0.1", Export: "/x", Port: closed, MountPort: closed}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Create(ctx(t), backends.CreateRequest{Name: "v"})
	if grpcerr.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(closed)) || !strings.Contains(err.Error(), "MOUNT") {
		t.Fatalf("closed port: %v (%v)", err, grpcerr.Code(err))
	}
	t.Logf("closed port: %v", err)

	b, srv := newBackend(t, OnDeleteDelete, ganesha.Options{})
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "before"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = b.Create(c, backends.CreateRequest{Name: "after"})
	if grpcerr.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(srv.Port)) || !strings.Contains(err.Error(), "create "+dirName("after")) {
		t.Fatalf("server gone: %v (%v)", err, grpcerr.Code(err))
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("took %v", d)
	}
	t.Logf("server gone: %v", err)
	start = time.Now()
	if err := b.Probe(ctx(t)); grpcerr.Code(err) != codes.Unavailable {
		t.Fatalf("probe with the server gone: %v", err)
	} else if d := time.Since(start); d > time.Second {
		t.Fatalf("probe after a deadline waited %v for the old session", d)
	} else {
		t.Logf("probe: %v", err)
	}
}

// TestRootSquash: an export that squashes root refuses the controller,
// and the error names the export option to change; a node's plugin, which
// only reads, still finds the volumes the controller made.
func TestRootSquash(t *testing.T) {
	srv := ganesha.Start(t, harness.TempDir(t), ganesha.Options{Squash: "Root_Squash"})
	// What a controller on an unsquashed export made, on the server's disk
	// (before ganesha caches the export's directories).
	id := dirName("made-elsewhere")
	meta := filepath.Join(srv.Export, "csi/vols", metaDirName)
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(srv.Export, "csi/vols", id), 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(meta, id+".json"), []byte(`{"name":"made-elsewhere","capacityBytes":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b := backendOn(t, srv, OnDeleteDelete)
	_, err := b.Create(ctx(t), backends.CreateRequest{Name: "v"})
	if grpcerr.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no_root_squash") {
		t.Fatalf("root squash: %v (%v)", err, grpcerr.Code(err))
	}
	t.Logf("root squash: %v", err)
	v, err := b.Get(ctx(t), id)
	if err != nil || v.Name != "made-elsewhere" {
		t.Fatalf("a node's read through a squashing export: %+v %v", v, err)
	}
	// With nothing made yet, the first directory is refused the same way.
	fresh := ganesha.Start(t, harness.TempDir(t), ganesha.Options{Squash: "Root_Squash"})
	_, err = backendOn(t, fresh, OnDeleteDelete).Create(ctx(t), backends.CreateRequest{Name: "v"})
	if grpcerr.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "MKDIR csi: NFS3ERR_ACCES") {
		t.Fatalf("root squash on an empty export: %v (%v)", err, grpcerr.Code(err))
	}
}

// TestPortmapper: with port and mountPort 0 the backend finds both
// services through the server's portmapper (rpcbind), where ganesha
// registered them.
func TestPortmapper(t *testing.T) {
	srv := ganesha.Start(t, harness.TempDir(t), ganesha.Options{})
	b, err := New(Config{Name: "pm", Server: ganesha.Host, Export: srv.Export}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "via-rpcbind"})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(srv.Export, v.ID)); err != nil || !fi.IsDir() {
		t.Fatalf("directory not made: %v", err)
	}
}

// cutter is a TCP proxy in front of the server's NFS port that cuts every
// connection, and refuses new ones, once it has forwarded a given number
// of reads from the client: the server goes away in the middle of a call.
type cutter struct {
	l      net.Listener
	to     string
	mu     sync.Mutex
	reads  int
	cutAt  int
	conns  []net.Conn
	closed bool
}

func newCutter(t *testing.T, addr, to string, cutAt int) *cutter {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, to: to, cutAt: cutAt}
	go c.serve()
	t.Cleanup(c.cut)
	return c
}

func (c *cutter) serve() {
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.to)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		c.conns = append(c.conns, in, out)
		c.mu.Unlock()
		go func() { io.Copy(in, out); in.Close() }()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					c.mu.Lock()
					c.reads++
					cut := c.cutAt > 0 && c.reads >= c.cutAt
					c.mu.Unlock()
					if cut {
						c.cut()
						return
					}
					if _, err := out.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					out.Close()
					return
				}
			}
		}()
	}
}

// cut closes the listener and every connection.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.l.Close()
	for _, x := range c.conns {
		x.Close()
	}
}

func (c *cutter) seen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// TestServerGoesAwayMidCall cuts the NFS connection in the middle of a
// CreateVolume: the call fails UNAVAILABLE with the address and the call,
// and once the server is back, the retry completes the same volume.
func TestServerGoesAwayMidCall(t *testing.T) {
	srv := ganesha.Start(t, harness.TempDir(t), ganesha.Options{})
	upstream := net.JoinHostPort(ganesha.Host, strconv.Itoa(srv.Port))
	// Count the reads of a whole create on a fresh session, then cut a
	// second backend's create halfway through.
	probe := newCutter(t, "127.0.0.1:0", upstream, 0)
	pb, err := New(Config{Name: "p", Server: ganesha.Host, Export: srv.Export, Port: probe.l.Addr().(*net.TCPAddr).Port, MountPort: srv.MountPort}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.Create(ctx(t), backends.CreateRequest{Name: "counting", RequiredBytes: 1}); err != nil {
		t.Fatal(err)
	}
	pb.Close()
	whole := probe.seen()
	if whole < 6 {
		t.Fatalf("a create took only %d reads; cannot cut it in the middle", whole)
	}
	proxy := newCutter(t, "127.0.0.1:0", upstream, whole/2+1)
	addr := proxy.l.Addr().String()
	port := proxy.l.Addr().(*net.TCPAddr).Port
	b, err := New(Config{Name: "m", Server: ganesha.Host, Export: srv.Export, Port: port, MountPort: srv.MountPort}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	req := backends.CreateRequest{Name: "mid-call", RequiredBytes: 1 << 20}
	start := time.Now()
	_, err = b.Create(ctx(t), req)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the failed create took %v", d)
	}
	if grpcerr.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "create "+dirName("mid-call")) {
		t.Fatalf("cut mid-call: %v (%v)", err, grpcerr.Code(err))
	}
	t.Logf("cut after %d of %d reads: %v", proxy.seen(), whole, err)

	// The server is back on the same address: the retry finishes the job.
	newCutter(t, addr, upstream, 0)
	start = time.Now()
	v, err := b.Create(ctx(t), req)
	t.Logf("retry took %v", time.Since(start))
	if err != nil {
		t.Fatalf("retry after the cut: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(srv.Export, v.ID)); err != nil || !fi.IsDir() || v.CapacityBytes != 1<<20 {
		t.Fatalf("retry gave %+v, directory %v", v, err)
	}
	// Delete sweeps what the cut write left.
	if err := b.Delete(ctx(t), v.ID); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(srv.Export, metaDirName)); len(left) != 1 || left[0].Name() != dirName("counting")+".json" {
		t.Fatalf("records left after delete: %v", left)
	}
}

// TestClone copies a volume's tree through the client and checks the copy
// on the server's disk: contents, modes, owners, links, nested
// directories.
func TestClone(t *testing.T) {
	srv := ganesha.Start(t, harness.TempDir(t), ganesha.Options{})
	b := backendOn(t, srv, OnDeleteDelete)
	src, err := b.Create(ctx(t), backends.CreateRequest{Name: "source"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "copy", SourceVolume: src.ID}); !errors.Is(err, backends.ErrUnsupported) || !strings.Contains(err.Error(), "clone: true") {
		t.Fatalf("clone without the switch: %v", err)
	}
	b.cfg.Clone = true
	base := filepath.Join(srv.Export, "csi/vols")
	root := filepath.Join(base, src.ID)
	big := make([]byte, 3<<20+17) // more than one READ and WRITE
	for i := range big {
		big[i] = byte(i * 7)
	}
	files := map[string][]byte{"a.txt": []byte("hello"), "sub/deeper/big.bin": big, "sub/empty": nil}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, "a.txt"), 123, 456); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/deeper/big.bin", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	req := backends.CreateRequest{Name: "copy", SourceVolume: src.ID}
	v, err := b.Create(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if v.SourceVolume != src.ID {
		t.Fatalf("clone does not name its source: %+v", v)
	}
	dst := filepath.Join(base, v.ID)
	for p, data := range files {
		got, err := os.ReadFile(filepath.Join(dst, p))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, want %d (%v)", p, len(got), len(data), err)
		}
	}
	fi, err := os.Stat(filepath.Join(dst, "a.txt"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscallStat).Uid != 123 || fi.Sys().(*syscallStat).Gid != 456 {
		t.Fatalf("a.txt: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "sub/deeper/big.bin" {
		t.Fatalf("link: %q %v", l, err)
	}
	// The clone's own directory gets the configured owner and mode.
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o750 || fi.Sys().(*syscallStat).Uid != 1000 {
		t.Fatalf("clone directory: %v %v", fi.Mode(), err)
	}
	// Writing to the clone leaves the source alone.
	if err := os.WriteFile(filepath.Join(dst, "a.txt"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "a.txt")); string(got) != "hello" {
		t.Fatalf("source changed with its clone: %q", got)
	}
	for _, c := range []struct {
		name string
		req  backends.CreateRequest
		want error
	}{
		{"repeat", req, nil},
		{"other source", backends.CreateRequest{Name: "copy", SourceVolume: dirName("other")}, backends.ErrAlreadyExists},
		{"missing source", backends.CreateRequest{Name: "copy-2", SourceVolume: dirName("nothing")}, backends.ErrNotFound},
		{"snapshot source", backends.CreateRequest{Name: "copy-3", SourceSnapshot: "snap"}, backends.ErrUnsupported},
	} {
		if _, err := b.Create(ctx(t), c.req); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(got) != "changed" {
		t.Fatalf("a repeated clone copied again over the volume: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(base, metaDirName, ".clone-*")); len(left) != 0 {
		t.Fatalf("scratch copies left: %v", left)
	}

	// A clone whose copy was cut off (its record written, a partial
	// scratch copy, no directory) is completed by a retry; a scratch copy
	// left then is swept by Delete.
	cut := dirName("cut-clone")
	if err := b.do(ctx(t), "test", func(s *session) error {
		return b.writeRecord(s, cut, &record{Name: "cut-clone", SourceVolume: src.ID})
	}); err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(base, metaDirName, ".clone-"+cut)
	if err := os.MkdirAll(filepath.Join(scratch, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "a.txt"), []byte("hel"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The retry starts the copy again and ends with a whole one.
	again, err := b.Create(ctx(t), backends.CreateRequest{Name: "cut-clone", SourceVolume: src.ID})
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		if got, err := os.ReadFile(filepath.Join(base, again.ID, p)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("retried clone %s: %d bytes, want %d (%v)", p, len(got), len(data), err)
		}
	}
	if err := os.MkdirAll(filepath.Join(scratch, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx(t), cut); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(base, metaDirName, "*"+cut+"*")); len(left) != 0 {
		t.Fatalf("left after deleting a cut clone: %v", left)
	}
}

// TestSnapshots takes a snapshot, changes the volume, and restores the
// snapshot into a new volume: the new volume holds the old data.
func TestSnapshots(t *testing.T) {
	srv := ganesha.Start(t, harness.TempDir(t), ganesha.Options{})
	plain := backendOn(t, srv, OnDeleteDelete)
	if _, ok := backends.As[backends.Snapshotter](plain); ok {
		t.Fatal("a backend without snapshots: true can take snapshots")
	}
	cfg := plain.cfg
	cfg.Snapshots = true
	built, err := Build(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sn, ok := backends.As[backends.Snapshotter](built)
	if !ok {
		t.Fatal("snapshots: true gives no Snapshotter")
	}
	b := built.(Snapshotting).Backend
	defer b.Close()
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "db", RequiredBytes: 7 << 20})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(srv.Export, "csi/vols", v.ID, "table")
	if err := os.WriteFile(data, []byte("v1"), 0o640); err != nil {
		t.Fatal(err)
	}
	snap, err := sn.CreateSnapshot(ctx(t), v.ID, "nightly", nil)
	if err != nil || !snap.Ready || snap.SourceID != v.ID || snap.SizeBytes != 7<<20 || !validSnapID(snap.ID) {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	if again, err := sn.CreateSnapshot(ctx(t), v.ID, "nightly", nil); err != nil || again.ID != snap.ID {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	other, err := b.Create(ctx(t), backends.CreateRequest{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.CreateSnapshot(ctx(t), other.ID, "nightly", nil); !errors.Is(err, backends.ErrAlreadyExists) {
		t.Fatalf("same name, other source: %v", err)
	}
	if _, err := sn.CreateSnapshot(ctx(t), dirName("missing"), "x", nil); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("missing source: %v", err)
	}
	if err := os.WriteFile(data, []byte("v2"), 0o640); err != nil {
		t.Fatal(err)
	}
	restored, err := b.Create(ctx(t), backends.CreateRequest{Name: "db-restored", SourceSnapshot: snap.ID})
	if err != nil || restored.SourceSnapshot != snap.ID {
		t.Fatalf("restore: %+v %v", restored, err)
	}
	if got, err := os.ReadFile(filepath.Join(srv.Export, "csi/vols", restored.ID, "table")); err != nil || string(got) != "v1" {
		t.Fatalf("restored data %q %v, want v1", got, err)
	}
	list, err := sn.ListSnapshots(ctx(t))
	if err != nil || len(list) != 1 || list[0].ID != snap.ID || list[0].Name != "nightly" {
		t.Fatalf("list %v %v", list, err)
	}
	if vols, err := b.List(ctx(t)); err != nil || len(vols) != 3 {
		t.Fatalf("snapshots show among volumes: %v %v", vols, err)
	}
	// A partial copy and a cut-off record write, as a failed connection
	// leaves them; DeleteSnapshot sweeps both.
	snaps := filepath.Join(srv.Export, "csi/vols", metaDirName, snapDirName)
	for _, p := range []string{".copy-" + snap.ID + "/sub", "." + snap.ID + ".tmp-0123"} {
		if err := os.MkdirAll(filepath.Join(snaps, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(snaps, "."+snap.ID+".tmp-0123")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snaps, "."+snap.ID+".tmp-0123"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := sn.DeleteSnapshot(ctx(t), snap.ID); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(srv.Export, "csi/vols", metaDirName, snapDirName)); len(left) != 0 {
		t.Fatalf("left after deleting the snapshot: %v", left)
	}
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "late", SourceSnapshot: snap.ID}); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("restore of a deleted snapshot: %v", err)
	}
	if _, err := plain.Create(ctx(t), backends.CreateRequest{Name: "late", SourceSnapshot: snap.ID}); !errors.Is(err, backends.ErrUnsupported) || !strings.Contains(err.Error(), "snapshots: true") {
		t.Fatalf("restore without snapshots: true: %v", err)
	}
}
