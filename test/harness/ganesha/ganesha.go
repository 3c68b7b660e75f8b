// Package ganesha runs a real NFS server for tests: nfs-ganesha (Debian
// packages nfs-ganesha, nfs-ganesha-vfs, rpcbind) exporting a temporary
// directory through its VFS FSAL, on NFS and MOUNT ports of its own. It is
// the server production deployments run, in user space, so it needs no
// kernel NFS server. The harness starts rpcbind only when none is running,
// waits until the export answers the MOUNT and NFS protocols through the
// pure-Go client, and stops what it started by the processes' own pids.
package ganesha

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// Options shape the export.
type Options struct {
	// Squash is the export's squash setting; empty means No_Root_Squash,
	// which the plugin's controller needs. Root_Squash lets a test see the
	// permission error an operator would.
	Squash string
}

// Server is one running ganesha.nfsd.
type Server struct {
	// Export is the exported directory, on this machine's disk, so a test
	// can look at what the plugin made through the server.
	Export    string
	Port      int // NFS
	MountPort int // MOUNT
	Log       string

	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	rpcbind *exec.Cmd
	stop    sync.Once
}

// Host is the address the server listens on for tests.
const Host = "127.0.0.1"

// Start runs a server whose export is a new directory below dir, and stops
// it when the test ends. It fails the test, with the server's log, when the
// packages are missing or the server does not come up.
func Start(t testing.TB, dir string, o Options) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("nfs-ganesha's VFS FSAL needs root (open_by_handle_at); run the test as root, as CI does")
	}
	bin, err := exec.LookPath("ganesha.nfsd")
	if err != nil {
		t.Fatalf("ganesha.nfsd is not installed (Debian: apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind; make test runs .ci/deps, which does): %v", err)
	}
	s := &Server{dir: filepath.Join(dir, "ganesha"), exited: make(chan struct{})}
	s.Export = filepath.Join(s.dir, "export")
	s.Log = filepath.Join(s.dir, "ganesha.log")
	for _, d := range []string{s.Export, filepath.Join(s.dir, "recovery")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.startRPCBind(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	s.Port, s.MountPort = ports[0], ports[1]
	conf := filepath.Join(s.dir, "ganesha.conf")
	if err := os.WriteFile(conf, []byte(s.config(o)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-F", "-f", conf, "-L", s.Log, "-p", filepath.Join(s.dir, "ganesha.pid"), "-N", "NIV_EVENT")
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	// The server dies with the test binary, even if the binary is killed.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start ganesha.nfsd: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(30 * time.Second); err != nil {
		log, _ := os.ReadFile(s.Log)
		t.Fatalf("nfs-ganesha did not serve %s: %v\noutput: %s\nlog tail:\n%s", s.Export, err, out.String(), tail(string(log), 30))
	}
	return s
}

func (s *Server) config(o Options) string {
	squash := o.Squash
	if squash == "" {
		squash = "No_Root_Squash"
	}
	return fmt.Sprintf(`NFS_CORE_PARAM {
	Protocols = 3, 4;
	NFS_Port = %d;
	MNT_Port = %d;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSV4 {
	Graceless = true;
	RecoveryBackend = fs;
	RecoveryRoot = %q;
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = %q;
	Pseudo = %q;
	Access_Type = RW;
	Squash = %s;
	Protocols = 3, 4;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
`, s.Port, s.MountPort, filepath.Join(s.dir, "recovery"), s.Export, s.Export, squash)
}

// startRPCBind starts rpcbind in the foreground unless a portmapper already
// answers on port 111; ganesha registers its services there.
func (s *Server) startRPCBind() error {
	if answers(Host + ":111") {
		return nil
	}
	bin, err := exec.LookPath("rpcbind")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/rpcbind"); err != nil {
			return fmt.Errorf("rpcbind is not installed (Debian: apt-get install rpcbind): %v", err)
		}
	}
	cmd := exec.Command(bin, "-f", "-w")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rpcbind: %v", err)
	}
	s.rpcbind = cmd
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if answers(Host + ":111") {
			return nil
		}
	}
	return errors.New("rpcbind did not listen on port 111 within 10s")
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitReady polls until the export answers a MOUNT request and the NFS
// service answers FSINFO on the export's root, or the server exits.
func (s *Server) waitReady(limit time.Duration) error {
	var last error
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		select {
		case <-s.exited:
			return fmt.Errorf("ganesha.nfsd exited: %v", s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if last = s.Ping(); last == nil {
			return nil
		}
	}
	return last
}

// Ping mounts the export through the Go client and asks for its FSINFO.
func (s *Server) Ping() error {
	if !answers(net.JoinHostPort(Host, strconv.Itoa(s.MountPort))) || !answers(net.JoinHostPort(Host, strconv.Itoa(s.Port))) {
		return errors.New("ports not listening yet")
	}
	auth := rpc.NewAuthUnix("harness", 0, 0).Auth()
	mc, err := nfsc.DialServiceAtPort(Host, s.MountPort)
	if err != nil {
		return err
	}
	type mountArgs struct {
		rpc.Header
		Dirpath string
	}
	res, err := mc.Call(&mountArgs{rpc.Header{Rpcvers: 2, Prog: nfsc.MountProg, Vers: nfsc.MountVers, Proc: nfsc.MountProc3MNT, Cred: auth, Verf: rpc.AuthNull}, s.Export})
	mc.Close()
	if err != nil {
		return err
	}
	if st, err := xdr.ReadUint32(res); err != nil || st != nfsc.MNT3Ok {
		return fmt.Errorf("MOUNT %s: status %d %v", s.Export, st, err)
	}
	fh, err := xdr.ReadOpaque(res)
	if err != nil {
		return err
	}
	nc, err := nfsc.DialServiceAtPort(Host, s.Port)
	if err != nil {
		return err
	}
	defer nc.Close()
	type fsinfoArgs struct {
		rpc.Header
		FH []byte
	}
	res, err = nc.Call(&fsinfoArgs{rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Proc: nfsc.NFSProc3FSInfo, Cred: auth, Verf: rpc.AuthNull}, fh})
	if err != nil {
		return err
	}
	if st, err := xdr.ReadUint32(res); err != nil || st != nfsc.NFS3Ok {
		return fmt.Errorf("FSINFO: status %d %v", st, err)
	}
	return nil
}

// Stop ends the server by its pid (SIGTERM, then SIGKILL after 10s) and
// rpcbind if this server started it. It can be called more than once.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			terminate(s.cmd, s.exited)
		}
		if s.rpcbind != nil {
			done := make(chan struct{})
			go func() { s.rpcbind.Wait(); close(done) }()
			terminate(s.rpcbind, done)
		}
	})
}

func terminate(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Running reports whether the server process is still alive.
func (s *Server) Running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// freePorts returns n TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// KernelHasNFSClient reports whether this kernel can mount NFS (nfs is in
// /proc/filesystems). The project's test machines cannot, so the tests
// that need a real NFS mount check this and say what they proved instead.
func KernelHasNFSClient() bool {
	raw, _ := os.ReadFile("/proc/filesystems")
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == "nfs" {
			return true
		}
	}
	return false
}
