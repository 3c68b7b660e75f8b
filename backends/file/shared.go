package file

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// SharedFSTypes are the filesystem types (as /proc/self/mountinfo names
// them) a pool with shared: true may lie on: network and cluster
// filesystems that every node mounts.
var SharedFSTypes = []string{
	"nfs", "nfs4", "ceph", "fuse.cephfs", "glusterfs", "fuse.glusterfs",
	"gpfs", "lustre", "beegfs", "ocfs2", "gfs2",
}

// checkShared returns an error unless dir is itself the mount point of a
// filesystem of one of the types. A shared pool whose mount is missing
// would otherwise be an empty local directory: the node would create
// volumes no other node sees, and report attachments other nodes cannot
// read, so two nodes could stage the same volume.
func checkShared(dir string, types []string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("shared pool %s: %w; mount the shared filesystem on %s before starting the plugin", dir, err, dir)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(real))
	if err != nil {
		return fmt.Errorf("shared pool %s: read mounts: %w", dir, err)
	}
	if len(mounts) == 0 {
		return fmt.Errorf("shared pool %s is not a mount point: mount the shared filesystem (%s) on %s before starting the plugin, or remove shared: true if the pool is local to this node",
			dir, strings.Join(types, ", "), dir)
	}
	// The last entry is the mount on top, the one paths resolve through.
	m := mounts[len(mounts)-1]
	if !slices.Contains(types, m.FSType) {
		return fmt.Errorf("shared pool %s is mounted from %s with type %s, which other nodes cannot see: mount the shared filesystem (%s) on %s before starting the plugin, or remove shared: true if the pool is local to this node",
			dir, m.Source, m.FSType, strings.Join(types, ", "), dir)
	}
	return nil
}
