package harness

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// LoopsUnder lists the loop devices whose backing file is below dir. A
// backing file deleted since (the kernel then appends " (deleted)") still
// counts where it was.
func LoopsUnder(dir string) []loop.Info {
	all, err := loop.List()
	if err != nil {
		return nil
	}
	var out []loop.Info
	for _, l := range all {
		if within(strings.TrimSuffix(l.BackingFile, " (deleted)"), dir) {
			out = append(out, l)
		}
	}
	return out
}

func within(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// Release gives back what is left below dir: it unmounts every mount at or
// below it, deepest first, and detaches the loop devices over files below
// it, trying again until they are gone or wait has passed (a killed
// process's last close, or autoclear, lets a device go asynchronously). It
// returns the devices still bound.
func Release(dir string, wait time.Duration) []loop.Info {
	ms := mountsUnder(dir)
	for i := len(ms) - 1; i >= 0; i-- {
		unix.Unmount(ms[i], unix.MNT_DETACH)
	}
	deadline := time.Now().Add(wait)
	for {
		left := LoopsUnder(dir)
		for _, l := range left {
			loop.Detach(l.Device)
		}
		if len(left) == 0 || !time.Now().Before(deadline) {
			return LoopsUnder(dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LeakCheck says what a test must have given back.
type LeakCheck struct {
	// Dir: no mount may be left at or below it, nor a loop device over a
	// file below it. Empty skips both.
	Dir string
	// Files, if set, is a directory (a pool) below which no file may be
	// left, other than the paths relative to it named in Keep: a
	// subdirectory with all it holds, or one file (a pool's lock file).
	Files string
	Keep  []string
	// Empty are directories that must hold nothing at all (a pool's
	// volumes and name reservations after everything was deleted). One
	// that does not exist counts as empty.
	Empty []string
	// Settle bounds the wait for what goes away asynchronously (an EC2
	// deletion, a loop device's autoclear); zero looks once.
	Settle time.Duration
}

// Leaks is what a LeakCheck found.
type Leaks struct {
	Mounts []string
	Loops  []loop.Info
	Files  []string // paths of files below Files, and entries of Empty
}

func (l Leaks) empty() bool { return len(l.Mounts)+len(l.Loops)+len(l.Files) == 0 }

// Find looks once for what c forbids.
func (c LeakCheck) Find() Leaks {
	var l Leaks
	if c.Dir != "" {
		l.Mounts = mountsUnder(c.Dir)
		l.Loops = LoopsUnder(c.Dir)
	}
	if c.Files != "" {
		filepath.WalkDir(c.Files, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(c.Files, p)
			if slices.Contains(c.Keep, rel) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			l.Files = append(l.Files, p)
			return nil
		})
	}
	for _, d := range c.Empty {
		es, _ := os.ReadDir(d)
		for _, e := range es {
			l.Files = append(l.Files, filepath.Join(d, e.Name()))
		}
	}
	return l
}

// AssertNoLeaks fails t for every mount, loop device and file that c
// forbids and finds, waiting up to c.Settle for them to go. The mounts and
// devices it reports are then released, so one leak does not break the
// tests after it.
func AssertNoLeaks(t testing.TB, c LeakCheck) {
	t.Helper()
	deadline := time.Now().Add(c.Settle)
	l := c.Find()
	for !l.empty() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		l = c.Find()
	}
	for _, m := range l.Mounts {
		t.Errorf("mount left behind at %s", m)
	}
	for _, d := range l.Loops {
		t.Errorf("loop device left behind: %s over %s", d.Device, d.BackingFile)
	}
	for _, f := range l.Files {
		t.Errorf("file left behind: %s", f)
	}
	if c.Dir != "" && (len(l.Mounts) > 0 || len(l.Loops) > 0) {
		if left := Release(c.Dir, 10*time.Second); len(left) > 0 {
			t.Errorf("could not detach %s", fmt.Sprint(left))
		}
	}
}
