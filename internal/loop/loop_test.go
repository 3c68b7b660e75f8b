package loop

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func image(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// scratch returns a directory on a disk filesystem (direct I/O works there,
// unlike on tmpfs) for a test that needs root for loop devices. test/harness
// cannot be used here: it imports this package.
func scratch(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root for loop devices, as CI has")
	}
	dir, err := os.MkdirTemp("/var/tmp", "loop-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for loop devices, as CI has")
	}
	dir, err := os.MkdirTemp("/var/tmp", "loop-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	a, b := image(t, dir, "a.img", 8<<20), image(t, dir, "b.img", 8<<20)
	ia, err := Attach(a, Options{DirectIO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer Detach(ia.Device)
	ib, err := Attach(b, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer Detach(ib.Device)

	found, err := Find(a)
	if err != nil || len(found) != 1 || found[0].Device != ia.Device {
		t.Fatalf("Find(a) = %+v, %v; want %s", found, err, ia.Device)
	}
	if !found[0].DirectIO {
		t.Error("direct I/O was not set on an image on a disk filesystem")
	}
	st, err := Status(ib.Device)
	if err != nil || !st.ReadOnly {
		t.Fatalf("status of the read-only device: %+v, %v", st, err)
	}
	dev, ino, _ := FileID(a)
	if err := Verify(ia.Device, dev, ino); err != nil {
		t.Fatalf("Verify of a's own device: %v", err)
	}
	if err := Verify(ib.Device, dev, ino); err == nil {
		t.Fatal("b's device verified as a's image")
	}

	// A holder makes the device busy; the settled check agrees.
	f, err := os.OpenFile(ia.Device, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if busy, err := InUseSettled(ia.Device); err != nil || !busy {
		t.Fatalf("InUseSettled with a holder = %v, %v", busy, err)
	}
	f.Close()
	if busy, err := InUse(ia.Device); err != nil || busy {
		t.Fatalf("InUse without a holder = %v, %v", busy, err)
	}

	// The device follows its image when told.
	if err := os.Truncate(a, 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := SetCapacity(ia.Device); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(ia.Device, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var size uint64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
	unix.Close(fd)
	if e != 0 || size != 16<<20 {
		t.Fatalf("device size %d after growing the image to 16 MiB (%v)", size, e)
	}

	for _, d := range []string{ia.Device, ib.Device} {
		if err := Detach(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, img := range []string{a, b} {
		if left, _ := Find(img); len(left) != 0 {
			t.Fatalf("devices left over %s: %+v", img, left)
		}
	}
}

func TestAttachRefusesOddSizes(t *testing.T) {
	dir := t.TempDir()
	p := image(t, dir, "odd.img", 1000)
	if _, err := Attach(p, Options{}); err == nil {
		t.Fatal("an image whose size is not a multiple of 512 was attached")
	}
}

// TestAttachWithAndWithoutLoopConfigure: the pre-5.8 path (LOOP_SET_FD,
// LOOP_SET_STATUS64, LOOP_SET_DIRECT_IO), forced on this kernel, gives the
// same device as LOOP_CONFIGURE: backed by the image's inode, read-only
// when asked, direct I/O when asked, and writable through to the image.
func TestAttachWithAndWithoutLoopConfigure(t *testing.T) {
	dir := scratch(t)
	tests := []struct {
		name string
		opt  Options
	}{
		{"LOOP_CONFIGURE read-write direct", Options{DirectIO: true, Name: "vol-a"}},
		{"LOOP_CONFIGURE read-only", Options{ReadOnly: true}},
		{"LOOP_SET_FD read-write direct", Options{DirectIO: true, Name: "vol-b", noConfigure: true}},
		{"LOOP_SET_FD read-write buffered", Options{noConfigure: true}},
		{"LOOP_SET_FD read-only", Options{ReadOnly: true, noConfigure: true}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := image(t, dir, fmt.Sprintf("%d.img", i), 8<<20)
			info, err := Attach(img, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer Detach(info.Device)
			st, err := Status(info.Device)
			if err != nil {
				t.Fatal(err)
			}
			dev, ino, _ := FileID(img)
			if st.BackingDev != dev || st.BackingInode != ino {
				t.Errorf("%s is backed by dev %d inode %d, want the image's %d/%d", info.Device, st.BackingDev, st.BackingInode, dev, ino)
			}
			if st.ReadOnly != tt.opt.ReadOnly || st.DirectIO != tt.opt.DirectIO || st.Name != tt.opt.Name {
				t.Errorf("status read-only=%v direct=%v name=%q, want %v/%v/%q", st.ReadOnly, st.DirectIO, st.Name, tt.opt.ReadOnly, tt.opt.DirectIO, tt.opt.Name)
			}
			if info != (Info{Device: info.Device, BackingDev: dev, BackingInode: ino, ReadOnly: st.ReadOnly, DirectIO: st.DirectIO, BackingFile: img, Name: tt.opt.Name}) {
				t.Errorf("Attach reported %+v, the device says %+v", info, st)
			}
			block := bytes.Repeat([]byte{0xa5}, 4096)
			f, err := os.OpenFile(info.Device, os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteAt(block, 4096)
				if err == nil {
					err = f.Sync()
				}
				f.Close()
			}
			if tt.opt.ReadOnly {
				if err == nil {
					t.Fatal("a write through a read-only loop device succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(block))
			g, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if _, err := g.ReadAt(got, 4096); err != nil || !bytes.Equal(got, block) {
				t.Fatalf("the image does not hold what was written through %s (%v)", info.Device, err)
			}
		})
	}
}

// TestAttachSkipsADeviceTakenMeanwhile: when another process binds the free
// device between LOOP_CTL_GET_FREE and our bind, the bind fails with EBUSY
// and Attach moves on to the next free device, leaving the other process's
// device alone. Both bind paths are covered.
func TestAttachSkipsADeviceTakenMeanwhile(t *testing.T) {
	dir := scratch(t)
	for i, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("noConfigure=%v", legacy), func(t *testing.T) {
			mine := image(t, dir, fmt.Sprintf("mine-%d.img", i), 8<<20)
			theirs := image(t, dir, fmt.Sprintf("theirs-%d.img", i), 8<<20)
			tf, err := os.OpenFile(theirs, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer tf.Close()
			var taken []string
			opt := Options{noConfigure: legacy, beforeBind: func(dev string) {
				if len(taken) > 0 {
					return
				}
				fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Error(err)
					return
				}
				defer unix.Close(fd)
				if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(tf.Fd())); err != nil {
					t.Errorf("the other process's bind of %s: %v", dev, err)
					return
				}
				taken = append(taken, dev)
				t.Cleanup(func() { Detach(dev) })
			}}
			info, err := Attach(mine, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer Detach(info.Device)
			if len(taken) != 1 || info.Device == taken[0] {
				t.Fatalf("Attach gave %s; the other process took %v", info.Device, taken)
			}
			tdev, tino, _ := FileID(theirs)
			if err := Verify(taken[0], tdev, tino); err != nil {
				t.Errorf("the other process's device changed: %v", err)
			}
			mdev, mino, _ := FileID(mine)
			if err := Verify(info.Device, mdev, mino); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAttachClearsAStaleReadOnlyPolicy: a read-only policy that a previous
// user of the device set with BLKROSET, and that outlived its binding, does
// not make a writer's device refuse writes; a reader's device stays
// read-only.
func TestAttachClearsAStaleReadOnlyPolicy(t *testing.T) {
	dir := scratch(t)
	for i, tt := range []struct {
		name string
		opt  Options
	}{
		{"writer LOOP_CONFIGURE", Options{}},
		{"writer LOOP_SET_FD", Options{noConfigure: true}},
		{"reader", Options{ReadOnly: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img := image(t, dir, fmt.Sprintf("ro-%d.img", i), 8<<20)
			opt := tt.opt
			opt.beforeBind = func(dev string) {
				fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Error(err)
					return
				}
				defer unix.Close(fd)
				if err := unix.IoctlSetPointerInt(fd, unix.BLKROSET, 1); err != nil {
					t.Error(err)
				}
			}
			info, err := Attach(img, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer Detach(info.Device)
			f, err := os.OpenFile(info.Device, os.O_WRONLY, 0)
			if err == nil {
				_, err = f.WriteAt(make([]byte, 4096), 0)
				f.Close()
			}
			if opt.ReadOnly != (err != nil) {
				t.Fatalf("write through %s (read-only=%v): %v", info.Device, opt.ReadOnly, err)
			}
			if opt.ReadOnly {
				// Leave the device as a writer would want to find it.
				if fd, err := unix.Open(info.Device, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
					unix.IoctlSetPointerInt(fd, unix.BLKROSET, 0)
					unix.Close(fd)
				}
			}
		})
	}
}
