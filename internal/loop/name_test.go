package loop

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A loop device over another block device keeps the name it was given and
// reports the device number of what it is backed by; a name too long for
// the kernel is refused before anything is bound.
func TestNameAndBackingDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for loop devices, as CI has")
	}
	dir, err := os.MkdirTemp("/var/tmp", "loop-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lower, err := Attach(image(t, dir, "a.img", 8<<20), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer Detach(lower.Device)
	upper, err := Attach(lower.Device, Options{ReadOnly: true, DirectIO: true, Name: "csi-libstorage-test label"})
	if err != nil {
		t.Fatal(err)
	}
	defer Detach(upper.Device)
	st, err := Status(upper.Device)
	if err != nil {
		t.Fatal(err)
	}
	var lst unix.Stat_t
	if err := unix.Stat(lower.Device, &lst); err != nil {
		t.Fatal(err)
	}
	if st.Name != "csi-libstorage-test label" || st.BackingRdev != lst.Rdev || !st.ReadOnly {
		t.Fatalf("status %+v; want the label, backing device %d and read-only", st, lst.Rdev)
	}
	if _, err := Attach(lower.Device, Options{Name: strings.Repeat("x", unix.LO_NAME_SIZE)}); err == nil {
		t.Fatal("a name longer than the kernel keeps was accepted")
	}
}
