//go:build linux

package ec2sim

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/sys/unix"
)

func requireLoop(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		// CI runs as root with loop devices: a silent skip would hide
		// that the device tests never ran.
		t.Fatalf("loop devices unavailable (these tests need root and /dev/loop-control): %v", err)
	}
	f.Close()
}

// newLoopSim returns a server backed by LoopDevices in temp dirs, and
// registers a leak check that runs after the server is closed.
func newLoopSim(t *testing.T, perInstance bool) (*Server, *ec2.Client, *LoopDevices) {
	t.Helper()
	requireLoop(t)
	loops := &LoopDevices{ImageDir: t.TempDir(), ByIDDir: t.TempDir(), PerInstance: perInstance}
	t.Cleanup(func() { assertNoLoopLeak(t, loops.ImageDir) }) // runs after srv.Close
	srv, c := newSim(t, Options{Devices: loops})
	return srv, c, loops
}

func assertNoLoopLeak(t *testing.T, imageDir string) {
	t.Helper()
	if left, err := LoopsBackedBy(imageDir); err != nil || len(left) > 0 {
		t.Errorf("loop devices leaked (sysfs): %v %v", left, err)
	}
	if out, err := exec.Command("losetup", "-a").CombinedOutput(); err == nil && strings.Contains(string(out), imageDir) {
		t.Errorf("loop devices leaked (losetup -a):\n%s", out)
	}
}

func attachAndWait(t *testing.T, c *ec2.Client, vol, inst, dev string) {
	t.Helper()
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String(dev)}); err != nil {
		t.Fatal(err)
	}
	poll(t, vol+" attached", func() bool { return attachmentState(t, c, vol) == "attached" })
}

func detachAndWait(t *testing.T, c *ec2.Client, vol string) {
	t.Helper()
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	poll(t, vol+" detached", func() bool { return attachmentState(t, c, vol) == "gone" })
}

// blockSize returns the size of /dev/loopN from sysfs.
func blockSize(t *testing.T, dev string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "size"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n * 512
}

func TestLoopDeviceLifecycle(t *testing.T) {
	srv, c, loops := newLoopSim(t, false)
	vol := createVol(t, c, "us-east-1a", 1, nil)
	waitAvailable(t, c, vol)
	if _, err := os.Stat(loops.ImagePath(vol)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("image exists before first attach: %v", err)
	}

	attachAndWait(t, c, vol, inst1, "/dev/xvdaa")
	link := filepath.Join(loops.ByIDDir, "nvme-Amazon_Elastic_Block_Store_"+strings.Replace(vol, "-", "", 1))
	if link != loops.LinkPath(inst1, vol) {
		t.Fatalf("LinkPath %s, want %s", loops.LinkPath(inst1, vol), link)
	}
	dev, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatalf("by-id link: %v", err)
	}
	if want, ok := loops.DevicePath(vol); !ok || dev != want || !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("link resolves to %s, DevicePath %s %v", dev, want, ok)
	}
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Fatalf("%s is not a block device: %v mode %o", dev, err, st.Mode)
	}
	if got := blockSize(t, dev); got != gib {
		t.Errorf("device size %d, want %d", got, gib)
	}
	for _, p := range []string{link, dev} {
		serial, err := loops.Serial(p)
		if err != nil || serial != NVMeSerial(vol) || strings.Contains(serial, "-") {
			t.Errorf("Serial(%s) = %q, %v; want %s", p, serial, err, NVMeSerial(vol))
		}
	}
	if left, _ := LoopsBackedBy(loops.ImageDir); len(left) != 1 || left[0] != dev {
		t.Errorf("LoopsBackedBy = %v, want [%s]", left, dev)
	}

	// Write through the device; the data must survive detach and re-attach
	// to another instance.
	marker := []byte("ec2sim persistence marker " + vol)
	f, err := os.OpenFile(link, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(marker, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	detachAndWait(t, c, vol)
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("by-id link survived detach: %v", err)
	}
	if left, _ := LoopsBackedBy(loops.ImageDir); len(left) != 0 {
		t.Errorf("loop device survived detach: %v", left)
	}
	if _, ok := loops.DevicePath(vol); ok {
		t.Errorf("DevicePath still reports a device after detach")
	}
	if _, err := os.Stat(loops.ImagePath(vol)); err != nil {
		t.Fatalf("image gone after detach: %v", err)
	}

	attachAndWait(t, c, vol, inst2, "/dev/xvdab")
	got := make([]byte, len(marker))
	f, err = os.Open(loops.LinkPath(inst2, vol))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !bytes.Equal(got, marker) {
		t.Fatalf("data after re-attach: %q, want %q", got, marker)
	}

	// Growing the volume grows the attached device.
	if _, err := c.ModifyVolume(ctx(t), &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	dev, _ = loops.DevicePath(vol)
	poll(t, "device grows to 2 GiB", func() bool { return blockSize(t, dev) == 2*gib })
	if fi, err := os.Stat(loops.ImagePath(vol)); err != nil || fi.Size() != 2*gib {
		t.Errorf("image after resize: %v %v", fi, err)
	}

	// Deleting an in-use volume is refused and leaves the device alone.
	_, err = c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
	if code := apiCode(t, err); code != "VolumeInUse" {
		t.Fatalf("delete in-use: %s", code)
	}
	if _, ok := loops.DevicePath(vol); !ok {
		t.Fatalf("refused delete removed the device")
	}
	detachAndWait(t, c, vol)
	if _, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "image removed", func() bool {
		_, err := os.Stat(loops.ImagePath(vol))
		return errors.Is(err, os.ErrNotExist)
	})
	if errs := srv.DeviceErrors(); len(errs) != 0 {
		t.Errorf("device errors: %v", errs)
	}
}

func TestLoopStaleLinkAndTwoNodes(t *testing.T) {
	srv, c, loops := newLoopSim(t, true)
	v1 := createVol(t, c, "us-east-1a", 1, nil)
	v2 := createVol(t, c, "us-east-1a", 1, nil)
	v3 := createVol(t, c, "us-east-1a", 1, nil)
	waitAvailable(t, c, v1, v2, v3)
	attachAndWait(t, c, v1, inst1, "/dev/xvdaa")
	attachAndWait(t, c, v2, inst2, "/dev/xvdaa") // same name, other instance: fine

	// Each node sees only its own volume.
	for inst, want := range map[string]string{inst1: v1, inst2: v2} {
		ents, err := os.ReadDir(loops.LinkDir(inst))
		if err != nil || len(ents) != 1 || ents[0].Name() != ByIDName(want) {
			t.Errorf("%s by-id dir: %v %v, want only %s", inst, ents, err, ByIDName(want))
		}
	}
	d1, _ := loops.DevicePath(v1)
	d2, _ := loops.DevicePath(v2)
	if d1 == d2 || d1 == "" {
		t.Fatalf("devices %q and %q", d1, d2)
	}

	// A stale link for v3 on node 2 pointing at v2's device: the link
	// resolves, but the serial reveals the wrong volume.
	stale, err := loops.PlantStaleLink(inst2, v3, v2)
	if err != nil {
		t.Fatal(err)
	}
	if stale != loops.LinkPath(inst2, v3) {
		t.Errorf("stale link path %s", stale)
	}
	if dev, err := filepath.EvalSymlinks(stale); err != nil || dev != d2 {
		t.Fatalf("stale link resolves to %s (%v), want %s", dev, err, d2)
	}
	if serial, err := loops.Serial(stale); err != nil || serial != NVMeSerial(v2) || serial == NVMeSerial(v3) {
		t.Fatalf("Serial(stale) = %q, %v; want %s", serial, err, NVMeSerial(v2))
	}
	if _, err := loops.PlantStaleLink(inst1, v3, v3); err == nil {
		t.Errorf("PlantStaleLink to an unattached volume succeeded")
	}
	// Attaching v3 to node 2 replaces the stale link with the real one.
	attachAndWait(t, c, v3, inst2, "/dev/xvdab")
	d3, _ := loops.DevicePath(v3)
	if dev, _ := filepath.EvalSymlinks(stale); dev != d3 || d3 == d2 {
		t.Fatalf("after attach, link → %s, want %s", dev, d3)
	}
	if _, err := loops.PlantStaleLink(inst1, "vol-00000000000000bad", v1); err != nil {
		t.Fatal(err)
	}

	// Serial refuses devices that are not simulated volumes.
	if _, err := loops.Serial(loops.ImageDir); err == nil {
		t.Errorf("Serial of a directory succeeded")
	}

	// Close with everything attached: no loop device and no link is left.
	links := []string{loops.LinkPath(inst1, v1), loops.LinkPath(inst2, v2), loops.LinkPath(inst2, v3), loops.LinkPath(inst1, "vol-00000000000000bad")}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoLoopLeak(t, loops.ImageDir)
	for _, l := range links {
		if _, err := os.Lstat(l); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("link %s left after Close: %v", l, err)
		}
	}
	for _, d := range []string{d1, d2, d3} {
		if _, err := os.Stat(filepath.Join("/sys/block", filepath.Base(d), "loop")); err == nil {
			if b, err := loopBackingFile(filepath.Base(d)); err == nil && strings.HasPrefix(b, loops.ImageDir) {
				t.Errorf("%s still bound to %s", d, b)
			}
		}
	}
	if err := loops.Attach(inst1, v1, "/dev/xvdaa", gib); err == nil {
		t.Errorf("Attach after Close succeeded")
	}
}

// TestLoopManyVolumes attaches several volumes to one instance: each gets
// its own loop device, link and serial.
func TestLoopManyVolumes(t *testing.T) {
	_, c, loops := newLoopSim(t, false)
	var vols []string
	for range 4 {
		vols = append(vols, createVol(t, c, "us-east-1a", 1, nil))
	}
	waitAvailable(t, c, vols...)
	for i, v := range vols {
		if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(v), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvda" + string(rune('a'+i)))}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, v := range vols {
		poll(t, v+" attached", func() bool { return attachmentState(t, c, v) == "attached" })
		d, ok := loops.DevicePath(v)
		if !ok || seen[d] {
			t.Fatalf("%s: device %q (dup %v)", v, d, seen[d])
		}
		seen[d] = true
		if s, err := loops.Serial(loops.LinkPath(inst1, v)); err != nil || s != NVMeSerial(v) {
			t.Errorf("Serial(link of %s) = %q %v", v, s, err)
		}
	}
	if left, _ := LoopsBackedBy(loops.ImageDir); len(left) != len(vols) {
		t.Errorf("LoopsBackedBy = %v, want %d devices", left, len(vols))
	}
}

// TestLoopComesBackWritable: the block layer keeps a device's read-only
// flag (BLKROSET) after the loop binding is gone, so a loop device someone
// set read-only would come back read-only for the next volume, and mkfs on
// it fail with EPERM.
func TestLoopComesBackWritable(t *testing.T) {
	_, c, loops := newLoopSim(t, false)
	vols := []string{createVol(t, c, "us-east-1a", 1, nil), createVol(t, c, "us-east-1a", 1, nil)}
	waitAvailable(t, c, vols...)
	attachAndWait(t, c, vols[0], inst1, "/dev/xvdba")
	first, ok := loops.DevicePath(vols[0])
	if !ok {
		t.Fatal("no loop device")
	}
	f, err := os.OpenFile(first, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		// Whoever gets the device next must not inherit the flag.
		if f, err := os.OpenFile(first, os.O_RDONLY, 0); err == nil {
			_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, 0)
			f.Close()
		}
	})
	detachAndWait(t, c, vols[0])
	attachAndWait(t, c, vols[1], inst1, "/dev/xvdbb")
	second, _ := loops.DevicePath(vols[1])
	if second != first {
		t.Logf("the kernel handed out %s, not %s again", second, first)
	}
	raw, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(second), "ro"))
	if err != nil || strings.TrimSpace(string(raw)) != "0" {
		t.Fatalf("%s read-only flag %q (%v), want 0", second, raw, err)
	}
	detachAndWait(t, c, vols[1])
}
