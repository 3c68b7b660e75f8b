package loop

import (
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
