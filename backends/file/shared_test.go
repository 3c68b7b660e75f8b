package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// mountTmpfs mounts a small tmpfs on a new directory, unmounted at cleanup.
func mountTmpfs(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(harness.TempDir(t), "pool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestSharedPoolMustBeMounted(t *testing.T) {
	plain := filepath.Join(harness.TempDir(t), "pool")
	if err := os.Mkdir(plain, 0o700); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(harness.TempDir(t), "pool")
	tmpfs := mountTmpfs(t)

	for _, c := range []struct {
		name, dir string
		want      []string // substrings of the error
	}{
		{"plain directory", plain, []string{plain, "is not a mount point", "mount the shared filesystem", "nfs4"}},
		{"missing directory", missing, []string{missing, "mount the shared filesystem"}},
		{"local filesystem", tmpfs, []string{tmpfs, "type tmpfs", "mount the shared filesystem"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(Config{Name: "local", Dir: c.dir, Shared: true}, Options{NodeID: "n1"})
			if err == nil {
				t.Fatalf("New accepted shared: true on %s", c.dir)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Nothing was created under the would-be mount point.
			if _, err := os.Stat(filepath.Join(c.dir, "volumes")); !os.IsNotExist(err) {
				t.Errorf("New created %s/volumes on a refused pool (stat: %v)", c.dir, err)
			}
		})
	}

	// The same directories without shared: true are accepted.
	for _, dir := range []string{plain, tmpfs} {
		if _, err := New(Config{Name: "local", Dir: dir}, Options{NodeID: "n1"}); err != nil {
			t.Errorf("New without shared on %s: %v", dir, err)
		}
	}
	// A mount point whose type is in the list passes.
	if err := checkShared(tmpfs, []string{"nfs4", "tmpfs"}); err != nil {
		t.Errorf("checkShared on a tmpfs mount with tmpfs allowed: %v", err)
	}
	// A directory below the mount point is not the mount point.
	sub := filepath.Join(tmpfs, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := checkShared(sub, []string{"tmpfs"}); err == nil || !strings.Contains(err.Error(), "is not a mount point") {
		t.Errorf("checkShared on a directory inside a mount: %v, want not a mount point", err)
	}
}
