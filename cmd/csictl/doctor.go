package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/capability"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
)

func init() {
	commands = append(commands, &command{
		path: "doctor", local: true,
		summary: "check this node has what the plugin needs; print each failure with its fix",
		help: "Checks the kernel (loop devices, the configured filesystems in /proc/filesystems,\n" +
			"mount namespaces), the tools (mkfs.*, blkid, resize tools), the plugin's socket,\n" +
			"Probe, each configured backend (GetCapacity on it, or Probe on a node-only\n" +
			"plugin) and, for each file pool, that its filesystem enforces the OFD byte-range\n" +
			"locks a shared pool relies on. Exits 1 if any check fails.\n\n" +
			"Give --config the plugin's own configuration file; its \"filesystems\" list\n" +
			"(default ext4) names the filesystems to check.",
		setup: setupDoctor,
	})
}

// check is one line of the doctor's report.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

type doctorReport struct {
	OK     bool    `json:"ok"`
	Checks []check `json:"checks"`
}

type doctor struct {
	checks []check
}

func (d *doctor) pass(name, detail string) {
	d.checks = append(d.checks, check{Name: name, OK: true, Detail: detail})
}

func (d *doctor) fail(name, detail, fix string) {
	d.checks = append(d.checks, check{Name: name, Detail: detail, Fix: fix})
}

func setupDoctor(fs *flag.FlagSet) action {
	cfgPath := fs.String("config", "", "the plugin's configuration `FILE`; without it, one file backend in --pool")
	pool := fs.String("pool", "/var/lib/csi-libstorage/pool", "pool `DIR` of the default file backend, used only without --config")
	var extra listFlag
	fs.Var(&extra, "fs", "also check filesystem `TYPE` (repeatable)")
	return func(c *client, _ []string) error {
		cfg := config.Default(*pool)
		if *cfgPath != "" {
			var err error
			if cfg, err = config.Load(*cfgPath); err != nil {
				return fmt.Errorf("doctor: %w", err)
			}
		}
		fsTypes := append([]string(nil), cfg.Filesystems...)
		if len(fsTypes) == 0 {
			fsTypes = []string{capability.DefaultFSType}
		}
		fsTypes = append(fsTypes, extra...)
		var d doctor
		d.kernel(cfg, fsTypes)
		d.tools(fsTypes)
		d.plugin(c, cfg)
		d.pools(cfg)
		return d.report(c)
	}
}

func (d *doctor) report(c *client) error {
	rep := doctorReport{OK: true, Checks: d.checks}
	failed := 0
	for _, ch := range d.checks {
		if !ch.OK {
			rep.OK = false
			failed++
		}
	}
	var err error
	if c.structured() {
		err = c.writeJSON(rep)
	} else {
		err = c.table(func(t *table) {
			t.row("CHECK", "RESULT", "DETAIL")
			for _, ch := range d.checks {
				res := "pass"
				if !ch.OK {
					res = "FAIL"
				}
				t.row(ch.Name, res, ch.Detail)
				if !ch.OK {
					t.row("", "", "fix: "+ch.Fix)
				}
			}
		})
	}
	if err == nil && failed > 0 {
		err = &failure{msg: fmt.Sprintf("doctor: %d of %d checks failed", failed, len(d.checks))}
	}
	return err
}

func hasFileBackend(cfg *config.Config) bool {
	for _, e := range cfg.Backends {
		if e.Type == file.Type {
			return true
		}
	}
	return false
}

func (d *doctor) kernel(cfg *config.Config, fsTypes []string) {
	if hasFileBackend(cfg) {
		if f, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0); err != nil {
			d.fail("kernel: loop devices", fmt.Sprintf("/dev/loop-control: %v", errors.Unwrap(err)),
				"the file backend needs loop devices: load the loop module (modprobe loop) and run the plugin as root with /dev/loop-control and /dev/loop* visible (a privileged container, or those devices passed in)")
		} else {
			f.Close()
			d.pass("kernel: loop devices", "/dev/loop-control opens")
		}
	}
	known, err := procFilesystems()
	for _, t := range fsTypes {
		name := "kernel: filesystem " + t
		switch {
		case err != nil:
			d.fail(name, err.Error(), "mount /proc in the plugin's container")
		case known[t]:
			d.pass(name, "listed in /proc/filesystems")
		default:
			d.fail(name, "not in /proc/filesystems", fmt.Sprintf("load the module (modprobe %s) or install a kernel that has it; the plugin cannot mount %s volumes without it", t, t))
		}
	}
	if _, err := os.Stat("/proc/self/ns/mnt"); err != nil {
		d.fail("kernel: mount namespaces", fmt.Sprintf("/proc/self/ns/mnt: %v", errors.Unwrap(err)),
			"Mesos (the filesystem/linux and volume/csi isolators) runs containers in mount namespaces: use a kernel built with CONFIG_NAMESPACES")
	} else {
		d.pass("kernel: mount namespaces", "/proc/self/ns/mnt exists")
	}
}

// procFilesystems returns the filesystem types the kernel knows now.
func procFilesystems() (map[string]bool, error) {
	raw, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			out[f[len(f)-1]] = true
		}
	}
	return out, sc.Err()
}

// toolPackages names the Debian package of each tool, for the fix.
var toolPackages = map[string]string{
	"blkid": "util-linux", "mkfs.ext4": "e2fsprogs", "mkfs.ext3": "e2fsprogs", "mkfs.ext2": "e2fsprogs",
	"resize2fs": "e2fsprogs", "mkfs.xfs": "xfsprogs", "xfs_growfs": "xfsprogs", "mkfs.btrfs": "btrfs-progs", "btrfs": "btrfs-progs",
}

func (d *doctor) tools(fsTypes []string) {
	need := []string{"blkid"}
	for _, t := range fsTypes {
		need = append(need, "mkfs."+t)
		switch t {
		case "ext2", "ext3", "ext4":
			need = append(need, "resize2fs")
		case "xfs":
			need = append(need, "xfs_growfs")
		case "btrfs":
			need = append(need, "btrfs")
		}
	}
	seen := map[string]bool{}
	for _, tool := range need {
		if seen[tool] {
			continue
		}
		seen[tool] = true
		if p, err := exec.LookPath(tool); err == nil {
			d.pass("tool: "+tool, p)
			continue
		}
		fix := fmt.Sprintf("install %s in the plugin's image or host, on its PATH", tool)
		if pkg := toolPackages[tool]; pkg != "" {
			fix = fmt.Sprintf("install %s (Debian/Ubuntu package %s) on the plugin's PATH", tool, pkg)
		}
		d.fail("tool: "+tool, "not found on PATH ("+os.Getenv("PATH")+")", fix)
	}
}

// plugin checks the socket, Probe and each backend through the plugin.
func (d *doctor) plugin(c *client, cfg *config.Config) {
	ep, err := parseEndpoint(c.g.endpoint)
	if err != nil {
		d.fail("plugin: socket", err.Error(), "pass --endpoint, or set $CSI_ENDPOINT, to the plugin's socket")
		d.unreachable(cfg)
		return
	}
	if ep.network == "unix" {
		fi, err := os.Stat(ep.address)
		switch {
		case err != nil:
			d.fail("plugin: socket", fmt.Sprintf("%s: %v", ep.address, errors.Unwrap(err)),
				"start the plugin (csi-libstorage --endpoint "+ep.String()+"), or pass --endpoint (or $CSI_ENDPOINT) naming its socket")
			d.unreachable(cfg)
			return
		case fi.Mode()&os.ModeSocket == 0:
			d.fail("plugin: socket", ep.address+" is not a socket", "point --endpoint at the plugin's socket")
			d.unreachable(cfg)
			return
		}
	}
	conn, err := net.DialTimeout(ep.network, ep.address, 5*time.Second)
	if err != nil {
		d.fail("plugin: socket", fmt.Sprintf("nothing answers on %s: %v", ep, errors.Unwrap(err)),
			"the plugin that made this socket is gone: restart it (it replaces a stale socket); if it keeps dying, read its log")
		d.unreachable(cfg)
		return
	}
	conn.Close()
	d.pass("plugin: socket", "accepts connections on "+ep.String())

	gc, err := dial(ep)
	if err != nil {
		d.fail("plugin: Probe", err.Error(), "check --endpoint")
		return
	}
	defer gc.Close()
	rc := newClient(c.ctx, c.g, gc, c.out)
	ready := false
	resp, err := invoke(rc, "Probe", rc.id.Probe, &csi.ProbeRequest{})
	switch {
	case err != nil:
		d.fail("plugin: Probe", err.Error(), "read the plugin's log; a plugin that answers Probe with an error is not serving")
	case resp.GetReady() != nil && !resp.GetReady().GetValue():
		d.fail("plugin: Probe", "not ready: a backend cannot serve requests", "see the backend checks below and the plugin log's \"backend not ready\" lines")
	default:
		ready = true
		d.pass("plugin: Probe", "ready")
	}
	for _, e := range cfg.Backends {
		name := "backend: " + e.Name
		cr, err := invoke(rc, "GetCapacity", rc.ctrl.GetCapacity, &csi.GetCapacityRequest{Parameters: map[string]string{params.BackendKey: e.Name}})
		switch {
		case err == nil:
			d.pass(name, fmt.Sprintf("answers GetCapacity (%s available)", fmtCapacity(cr.GetAvailableCapacity())))
		case status.Code(errors.Unwrap(err)) == codes.Unimplemented && ready:
			d.pass(name, "node-only plugin: healthy as far as Probe tells")
		case status.Code(errors.Unwrap(err)) == codes.Unimplemented:
			d.fail(name, "node-only plugin and Probe says not ready", "read the plugin log's \"backend not ready\" lines for "+e.Name)
		default:
			d.fail(name, err.Error(), fmt.Sprintf("check the storage behind backend %q (%s) and the plugin log; the plugin must run with the same configuration as --config", e.Name, e.Type))
		}
	}
}

// unreachable records the checks that need the plugin as failed.
func (d *doctor) unreachable(cfg *config.Config) {
	const why, fix = "not checked: the plugin's socket is unreachable", "fix the socket check first"
	d.fail("plugin: Probe", why, fix)
	for _, e := range cfg.Backends {
		d.fail("backend: "+e.Name, why, fix)
	}
}

// pools checks, for each file pool, that its filesystem enforces the
// fcntl OFD byte-range locks that guard a pool several nodes share.
func (d *doctor) pools(cfg *config.Config) {
	for _, e := range cfg.Backends {
		if e.Type != file.Type {
			continue
		}
		name := "pool " + e.Name + ": locks"
		var fc file.Config
		if err := e.Decode(&fc); err != nil {
			d.fail(name, err.Error(), "fix the backend's entry in the configuration")
			continue
		}
		if fi, err := os.Stat(fc.Dir); err != nil || !fi.IsDir() {
			d.fail(name, "pool directory "+fc.Dir+" does not exist", "start the plugin with this configuration (it creates the pool), or pass the plugin's --config")
			continue
		}
		detail, err := checkOFDLocks(fc.Dir)
		if err != nil {
			d.fail(name, err.Error(), "a shared pool needs byte-range locks its filesystem carries between clients: a local filesystem, NFSv4 or NFSv3 with lockd (never the nolock mount option), or CephFS")
			continue
		}
		d.pass(name, detail)
	}
}

// checkOFDLocks takes an OFD write lock on a byte of a scratch file in dir
// and proves that a second open file description is refused the same byte.
func checkOFDLocks(dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".csictl-doctor-lock-")
	if err != nil {
		return "", fmt.Errorf("create a scratch file in %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		return "", fmt.Errorf("the filesystem of %s refuses fcntl OFD locks: %w", dir, err)
	}
	g, err := os.OpenFile(f.Name(), os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer g.Close()
	lk2 := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	switch err := unix.FcntlFlock(g.Fd(), unix.F_OFD_SETLK, &lk2); {
	case err == nil:
		return "", fmt.Errorf("the filesystem of %s grants two conflicting OFD locks: it accepts locks without enforcing them", dir)
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES):
		return "OFD byte-range locks are enforced in " + dir, nil
	default:
		return "", fmt.Errorf("second OFD lock in %s: %w", dir, err)
	}
}
