package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// rootPrefix names the benchmark's working directories under /var/tmp;
// the suffix is the pid of the run that owns it.
const rootPrefix = "csi-bench-"

// cleanup stops the plugins this run started, then undoes every mount and
// loop device below root, and removes root. It runs at the end, on error
// and on SIGINT/SIGTERM, and is safe to run twice.
func (h *harness) cleanup() (mounts, loops int) {
	for pid := range h.pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(30 * time.Second)
	for pid := range h.pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			var ws syscall.WaitStatus
			if p, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); p == pid {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		delete(h.pids, pid)
	}
	mounts, loops = cleanRoot(h.root)
	if mounts+loops > 0 {
		fmt.Fprintf(os.Stderr, "csi-bench: cleanup removed %d mounts and %d loop devices\n", mounts, loops)
	}
	return mounts, loops
}

// cleanRoot unmounts everything mounted below root (deepest first), detaches
// every loop device whose backing file is below root, and removes root.
func cleanRoot(root string) (mounts, loops int) {
	if root == "" || root == "/" {
		return
	}
	for pass := 0; pass < 4; pass++ {
		mps := mountsBelow(root)
		if len(mps) == 0 {
			break
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, 0); err != nil {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
			mounts++
		}
	}
	devs, _ := loop.List()
	for _, d := range devs {
		if strings.HasPrefix(d.BackingFile, root+"/") {
			if loop.Detach(d.Device) == nil {
				loops++
			}
		}
	}
	os.RemoveAll(root)
	return
}

// mountsBelow lists mount points below root, later (upper) mounts first.
func mountsBelow(root string) []string {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root + "/"))
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range infos {
		if strings.HasPrefix(m.Mountpoint, root+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	// Reverse order of mounting, and deeper paths first among equals.
	slices.Reverse(out)
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// cleanStale removes the working directories (and their mounts and loop
// devices) of earlier runs that died without cleaning up.
func cleanStale(base string) {
	matches, _ := filepath.Glob(filepath.Join(base, rootPrefix+"*"))
	for _, m := range matches {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(m), rootPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running
		}
		n, d := cleanRoot(m)
		fmt.Fprintf(os.Stderr, "csi-bench: removed %s left by a dead run (%d mounts, %d loop devices)\n", m, n, d)
	}
}
