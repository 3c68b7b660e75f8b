// Package nfs is the NFS backend: each volume is a directory of its own on
// an NFS export. The controller side never mounts the export: it makes,
// archives and removes directories over NFSv3 in user space (the pure-Go
// client github.com/willscott/go-nfs-client), so it needs no privileges, no
// mount propagation and no kernel NFS client. The node side hands the node
// service a mount source (server:/export/subDir/dir) that it mounts with
// the kernel's NFS client.
package nfs

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Type is the backend type name used in configuration.
const Type = "nfs"

// What DeleteVolume does with a volume's directory.
const (
	OnDeleteDelete  = "delete"
	OnDeleteArchive = "archive"
	OnDeleteRetain  = "retain"
)

// Config is one NFS backend instance, as the configuration file gives it.
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Server is the NFS server's host name or address.
	Server string `yaml:"server"`
	// Export is the exported path; SubDir, if set, is where below it the
	// volumes' directories live.
	Export string `yaml:"export"`
	SubDir string `yaml:"subDir"`
	// Port and MountPort are the server's NFS and MOUNT ports; 0 asks the
	// server's portmapper (rpcbind, port 111).
	Port      int `yaml:"port"`
	MountPort int `yaml:"mountPort"`
	// MountOptions are passed to the node's mount (nfsvers=4.1, hard, …).
	MountOptions []string `yaml:"mountOptions"`
	// OnDelete is delete (default), archive or retain.
	OnDelete string `yaml:"onDelete"`
	// UID, GID and Mode are the owner and mode of a new volume directory
	// (default 0, 0, "0770").
	UID  uint32 `yaml:"uid"`
	GID  uint32 `yaml:"gid"`
	Mode string `yaml:"mode"`
	// Clone lets CreateVolume copy another volume of this backend: the
	// tree is read and written through the controller (NFSv3 has no
	// server-side copy), so it costs the volume's size in traffic.
	Clone bool `yaml:"clone"`
	// Snapshots lets the backend take snapshots: whole copies of a
	// volume's tree, made the same way as clones.
	Snapshots bool `yaml:"snapshots"`
}

// DefaultMode is a new volume directory's mode when the configuration
// names none.
const DefaultMode = 0o770

// options the node side sets itself, or that would turn the stage into
// something else than an NFS mount.
var reservedOptions = []string{"addr", "bind", "rbind", "remount", "move"}

func (c *Config) check() (mode uint32, err error) {
	bad := func(format string, a ...any) (uint32, error) {
		return 0, fmt.Errorf("nfs backend %q: "+format, append([]any{c.Name}, a...)...)
	}
	switch {
	case c.Server == "":
		return bad("server is required (a host name or address)")
	case strings.ContainsAny(c.Server, "/ ,\t\n") || strings.HasPrefix(c.Server, "["):
		return bad("server %q must be a bare host name or address, without brackets, path or port", c.Server)
	case c.Export == "" || !path.IsAbs(c.Export) || path.Clean(c.Export) != c.Export:
		return bad("export %q must be an absolute, clean path (the path the server exports)", c.Export)
	case c.SubDir != "" && (path.IsAbs(c.SubDir) || path.Clean(c.SubDir) != c.SubDir || c.SubDir == ".." || strings.HasPrefix(c.SubDir, "../")):
		return bad("subDir %q must be a clean relative path below the export", c.SubDir)
	case c.Port < 0 || c.Port > 65535:
		return bad("port %d is not a TCP port (0 asks the portmapper)", c.Port)
	case c.MountPort < 0 || c.MountPort > 65535:
		return bad("mountPort %d is not a TCP port (0 asks the portmapper)", c.MountPort)
	}
	if c.SubDir == "." {
		c.SubDir = ""
	}
	for _, o := range c.MountOptions {
		k, _, _ := strings.Cut(o, "=")
		if o == "" || strings.ContainsAny(o, ", \t\n") {
			return bad("mountOptions entry %q must be one option (no commas or spaces)", o)
		}
		if slices.Contains(reservedOptions, k) {
			return bad("mountOptions entry %q: %s is set by the plugin", o, k)
		}
	}
	switch c.OnDelete {
	case "":
		c.OnDelete = OnDeleteDelete
	case OnDeleteDelete, OnDeleteArchive, OnDeleteRetain:
	default:
		return bad("onDelete %q: use delete, archive or retain", c.OnDelete)
	}
	if c.Mode == "" {
		return DefaultMode, nil
	}
	m, err := strconv.ParseUint(c.Mode, 8, 32)
	if err != nil || m > 0o7777 {
		return bad("mode %q: want an octal mode such as \"0770\"", c.Mode)
	}
	return uint32(m), nil
}

// Options are what the plugin gives the backend besides its configuration.
type Options struct {
	NodeID string
	Logger *zap.Logger
	// Resolve looks up the server's addresses for the node's mount (the
	// kernel needs an address, not a name); nil uses the system resolver.
	Resolve func(host string) ([]string, error)
}

// Backend is one NFS export.
type Backend struct {
	cfg  Config
	mode uint32
	opt  Options
	log  *zap.Logger

	mu   sync.Mutex
	sess *session // nil until the first call, and after a transport failure
}

// New checks the configuration. It does not contact the server: a server
// that is down at start-up makes Probe fail, not the plugin.
func New(c Config, o Options) (*Backend, error) {
	mode, err := c.check()
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Resolve == nil {
		o.Resolve = net.LookupHost
	}
	return &Backend{cfg: c, mode: mode, opt: o, log: o.Logger.With(zap.String("backend", c.Name))}, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

// Capabilities implements backends.Backend: mounted filesystems only, every
// multi-node mode (the point of NFS), nothing to attach.
func (b *Backend) Capabilities() backends.Capabilities {
	return backends.Capabilities{
		Mount:           true,
		FilesystemTypes: []string{"nfs", "nfs4"},
		MultiNodeMount:  []backends.AccessMode{backends.MultiNodeReaderOnly, backends.MultiNodeSingleWriter, backends.MultiNodeMultiWriter},
		Clone:           b.cfg.Clone || b.cfg.Snapshots,
	}
}

// Parameters implements backends.Backend: the backend takes no creation
// parameters of its own; everything is in the configuration.
func (b *Backend) Parameters() []string { return nil }

// base is the directory, relative to the export's root, that holds the
// volumes' directories.
func (b *Backend) base() string { return b.cfg.SubDir }

// rel joins elements below base into a path relative to the export root.
func (b *Backend) rel(elem ...string) string {
	return path.Join(append([]string{b.base()}, elem...)...)
}

// metaDirName holds one small JSON record per volume, beside the volumes'
// directories, so that the record is not part of the data a task sees.
const metaDirName = ".csi-libstorage"

// address is the server as an operator reads it in errors.
func (b *Backend) address(port int) string {
	if port == 0 {
		return net.JoinHostPort(b.cfg.Server, "111") + " (portmapper)"
	}
	return net.JoinHostPort(b.cfg.Server, strconv.Itoa(port))
}
