package nfs

import (
	"context"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Attach implements backends.Backend. Nothing is attached on NFS: any node
// that can reach the server mounts the directory. Capabilities says
// AttachRequired is false, so the services never call it; a direct call
// is a harmless success.
func (b *Backend) Attach(ctx context.Context, id string, req backends.AttachRequest) (map[string]string, error) {
	return nil, nil
}

// Detach implements backends.Backend; see Attach.
func (b *Backend) Detach(ctx context.Context, id, node string) error { return nil }

// Source is the NFS mount source of a volume: server:/export/subDir/dir,
// with an IPv6 address in brackets.
func (b *Backend) Source(id string) string {
	host := b.cfg.Server
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + path.Join(b.cfg.Export, b.base(), id)
}

// Connect implements backends.Backend: the node mounts the volume's
// directory with the kernel's NFS client, so the device is the mount
// source, with the configured options and the server's address (mount(2)
// takes no host name: the kernel needs addr=).
func (b *Backend) Connect(ctx context.Context, id string, _ map[string]string, readOnly bool) (backends.Device, error) {
	if !validID(id) {
		return backends.Device{}, fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
	}
	opts, err := b.mountOptions()
	if err != nil {
		return backends.Device{}, err
	}
	return backends.Device{Path: b.Source(id), FSType: b.fsType(), MountOptions: opts}, nil
}

// fsType is "nfs4" when the options ask for NFSv4 (which mount(2) also
// accepts as type nfs on current kernels, but not on old ones), else
// "nfs".
func (b *Backend) fsType() string {
	for _, o := range b.cfg.MountOptions {
		k, v, _ := strings.Cut(o, "=")
		if (k == "nfsvers" || k == "vers") && strings.HasPrefix(v, "4") {
			return "nfs4"
		}
	}
	return "nfs"
}

// mountOptions are the configured options, the server's address and the
// configured ports (which mount.nfs would otherwise ask the portmapper
// for; the kernel does that itself for NFSv3 when they are absent).
func (b *Backend) mountOptions() ([]string, error) {
	opts := slices.Clone(b.cfg.MountOptions)
	addr := b.cfg.Server
	if net.ParseIP(addr) == nil {
		addrs, err := b.opt.Resolve(addr)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("resolve nfs server %s for the mount: %v: %w", addr, err, backends.ErrUnavailable)
		}
		addr = addrs[0]
	}
	opts = append(opts, "addr="+addr)
	has := func(k string) bool {
		return slices.ContainsFunc(opts, func(o string) bool { return o == k || strings.HasPrefix(o, k+"=") })
	}
	if b.cfg.Port != 0 && !has("port") {
		opts = append(opts, "port="+strconv.Itoa(b.cfg.Port))
	}
	if b.cfg.MountPort != 0 && !has("mountport") && b.fsType() == "nfs" {
		opts = append(opts, "mountport="+strconv.Itoa(b.cfg.MountPort), "mountproto=tcp")
	}
	return opts, nil
}

// Verify implements backends.Backend: the source must be this volume's
// directory on this backend's export. There is no device identity to
// read; the server's path is the identity.
func (b *Backend) Verify(ctx context.Context, id string, dev backends.Device) error {
	if want := b.Source(id); dev.Path != want {
		return fmt.Errorf("mount source %s is not volume %s (%s)", dev.Path, id, want)
	}
	return nil
}

// Disconnect implements backends.Backend: the unmount is all there is.
func (b *Backend) Disconnect(ctx context.Context, id string) error { return nil }

// MarkFormatted implements backends.Backend: nothing is ever formatted.
func (b *Backend) MarkFormatted(ctx context.Context, id, fsType string) error { return nil }
