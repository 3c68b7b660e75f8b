// Package harness holds what the project's test suites need from the
// machine: root, a scratch directory whose mounts and loop devices are
// given back even when a test fails, a view of the mount table and of the
// loop devices under a directory, and one leak check (mounts, loop devices,
// files left) that every suite runs at its end.
package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"

	"time"
)

// RequireRoot fails (not skips) a test that needs root without it: CI runs
// as root, so a silent skip would hide that the test never ran.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (loop devices, mkfs, mount); run it as root, as CI does")
	}
}

// TempDir returns a scratch directory on the disk (not tmpfs, so loop
// devices can use direct I/O). At cleanup it unmounts whatever is still
// mounted below it, deepest first, so one failed test does not break the
// next run.
func TempDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("CSI_TEST_DIR")
	if base == "" {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, "csi-libstorage-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Loop devices over images below dir that a failed test left are
		// detached too, so one failure does not use up the machine's.
		Release(dir, 10*time.Second)
		os.RemoveAll(dir)
	})
	return dir
}

// MountsUnder lists the mount points at or below dir in this mount
// namespace, shallowest first.
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	return mountsUnder(dir)
}

func mountsUnder(dir string) []string {
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return !(i.Mountpoint == dir || strings.HasPrefix(i.Mountpoint, dir+"/")), false
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Mountpoint)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) < len(out[j]) })
	return out
}

// ModuleRoot finds the module's root directory (where go.mod is) from the
// working directory, which go test sets to the package's directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// RepoRoot is ModuleRoot for a test, which fails if there is none.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
