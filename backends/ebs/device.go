package ebs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

var nvmeNameRE = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)

// NVMeSerial is the default SerialFunc: the serial of an NVMe namespace
// from /sys/block/<nvmeXnY>/device/serial, which on Nitro instances is the
// EBS volume id without its dash ("vol0123..."). Other devices (Xen xvd
// disks) give ErrNoSerial.
func NVMeSerial(devicePath string) (string, error) { return nvmeSerialIn("/sys", devicePath) }

func (b *Backend) nvmeSerial(devicePath string) (string, error) {
	return nvmeSerialIn(b.sysfs, devicePath)
}

func nvmeSerialIn(sysfs, devicePath string) (string, error) {
	real, err := filepath.EvalSymlinks(devicePath)
	if err != nil {
		return "", err
	}
	name := filepath.Base(real)
	if !nvmeNameRE.MatchString(name) {
		return "", fmt.Errorf("%s (%s): %w", devicePath, real, ErrNoSerial)
	}
	raw, err := os.ReadFile(filepath.Join(sysfs, "block", name, "device", "serial"))
	if err != nil {
		return "", fmt.Errorf("serial of %s: %w", real, err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// serialOf is the NVMe serial an EBS volume shows: its id without the dash.
func serialOf(id string) string { return "vol" + strings.TrimPrefix(id, "vol-") }

// ByIDName is the udev by-id link name of an EBS volume on Nitro.
func ByIDName(id string) string { return "nvme-Amazon_Elastic_Block_Store_" + serialOf(id) }

// errRefused: a device was found but it is provably not the volume.
var errRefused = errors.New("refusing the device")

// Connect implements backends.Backend. It waits (bounded by the attach
// timeout and ctx) for the volume's device on this instance and returns it
// only once its serial proves it is this volume. A device whose NVMe
// serial proves it needs no EC2 call at all, and a publish context that
// describes the volume (publish.go) leaves EC2 out of the wait too.
func (b *Backend) Connect(ctx context.Context, id string, publish map[string]string, readOnly bool) (backends.Device, error) {
	if !volumeIDRE.MatchString(id) {
		return backends.Device{}, notFound(id)
	}
	if pv := publish[PublishVolumeID]; pv != "" && pv != id {
		return backends.Device{}, invalidf("publish context is for volume %s, not %s", pv, id)
	}
	if described(publish) {
		return b.connectDescribed(ctx, id, publish)
	}
	if dev, err := b.provenDevice(id); err != nil || dev != "" {
		if err == nil {
			b.log.Info("volume device found", zap.String("id", id), zap.String("device", dev))
		}
		return backends.Device{Path: dev}, err
	}
	inst, err := b.selfInstance(ctx)
	if err != nil {
		return backends.Device{}, err
	}
	var dev string
	err = b.wait(ctx, b.attachWait, fmt.Sprintf("device of volume %s on %s", id, inst), func() (bool, error) {
		if p, err := b.provenDevice(id); err != nil || p != "" {
			dev = p
			return p != "", err
		}
		v, err := b.describeVolume(ctx, id)
		if err != nil {
			return false, retryable(err)
		}
		a, ok := ec2Attachment(v, inst)
		switch {
		case !ok:
			// Either not attached yet, or attached and not described
			// yet (EC2 is eventually consistent): not yet.
			return false, nil
		case a.State == types.VolumeAttachmentStateDetaching || a.State == types.VolumeAttachmentStateDetached:
			return false, fmt.Errorf("%w: volume %s is being detached from this instance (%s)", backends.ErrConflict, id, inst)
		case a.State != types.VolumeAttachmentStateAttached:
			return false, nil // attaching, or busy: in transition
		}
		name := aws.ToString(a.Device)
		if pc := publish[PublishDevicePath]; pc != "" && suffixOf(pc) != suffixOf(name) {
			b.log.Warn("publish context names another device than EC2 reports; using EC2's", zap.String("id", id), zap.String("publish", pc), zap.String("ec2", name))
		}
		path, err := b.findDevice(ctx, id, inst, name)
		if err != nil {
			return false, err
		}
		dev = path
		return dev != "", nil
	})
	if err != nil {
		return backends.Device{}, err
	}
	b.log.Info("volume device found", zap.String("id", id), zap.String("device", dev))
	return backends.Device{Path: dev}, nil
}

// provenDevice returns the volume's device when its NVMe serial proves it
// is the volume: behind the udev by-id link, or, where udev made no links
// (minimal images), the NVMe namespace in sysfs whose serial is the
// volume's. "" when neither is there; an error wrapping errRefused when a
// link leads to another volume.
func (b *Backend) provenDevice(id string) (string, error) {
	want := serialOf(id)
	link := filepath.Join(b.byID, ByIDName(id))
	if _, err := os.Lstat(link); err == nil {
		real, err := filepath.EvalSymlinks(link)
		if err != nil {
			return "", nil // dangling: udev has not caught up
		}
		if !underDev(real) {
			return "", fmt.Errorf("%w: %s points at %s, outside /dev", errRefused, link, real)
		}
		got, serr := b.serial(real)
		if serr != nil {
			return "", fmt.Errorf("%w %s behind %s: cannot read its serial: %v", errRefused, real, link, serr)
		}
		if got != want {
			return "", fmt.Errorf("%w %s: the link %s is stale, its device has serial %q, not %q (volume %s); the wrong volume would be mounted",
				errRefused, real, link, got, want, id)
		}
		return real, nil
	}
	serials, _ := filepath.Glob(filepath.Join(b.sysfs, "block", "nvme*", "device", "serial"))
	for _, sp := range serials {
		raw, err := os.ReadFile(sp)
		if err != nil || strings.TrimSpace(string(raw)) != want {
			continue
		}
		name := filepath.Base(filepath.Dir(filepath.Dir(sp)))
		dev := filepath.Join("/dev", name)
		if b.devRoot != "" {
			dev = filepath.Join(b.devRoot, dev)
		}
		real, err := filepath.EvalSymlinks(dev)
		if err != nil || !underDev(real) {
			continue
		}
		// Read the serial again through the device itself: the
		// namespace may have been replaced since the scan.
		if got, err := b.serial(real); err == nil && got == want {
			return real, nil
		}
	}
	return "", nil
}

// nameCandidates lists where a device name may show up: the name itself
// and its xvd↔sd rename, below DevRoot.
func (b *Backend) nameCandidates(name string) []string {
	s := suffixOf(name)
	out := []string{name}
	for _, p := range []string{"/dev/xvd", "/dev/sd"} {
		if p+s != name {
			out = append(out, p+s)
		}
	}
	for i, n := range out {
		if b.devRoot != "" {
			out[i] = filepath.Join(b.devRoot, n)
		}
	}
	return out
}

func underDev(p string) bool { return strings.HasPrefix(p, "/dev/") }

// findDevice looks for the volume's device: the NVMe by-id link, then the
// attachment's device name. It returns "" while nothing is there yet and
// an error wrapping errRefused when what is there is another volume.
func (b *Backend) findDevice(ctx context.Context, id, inst, name string) (string, error) {
	want := serialOf(id)
	if dev, err := b.provenDevice(id); err != nil || dev != "" {
		return dev, err
	}
	_, lerr := os.Lstat(filepath.Join(b.byID, ByIDName(id)))
	linkExists := lerr == nil
	for _, c := range b.nameCandidates(name) {
		if _, err := os.Lstat(c); err != nil {
			continue
		}
		real, err := filepath.EvalSymlinks(c)
		if err != nil {
			continue
		}
		if !underDev(real) {
			return "", fmt.Errorf("%w: %s points at %s, outside /dev", errRefused, c, real)
		}
		got, serr := b.serial(real)
		switch {
		case serr == nil && got == want:
			return real, nil
		case serr == nil:
			return "", fmt.Errorf("%w %s (%s): its serial is %q, not %q: it is another volume", errRefused, c, real, got, want)
		case !errors.Is(serr, ErrNoSerial):
			return "", fmt.Errorf("%w %s (%s): cannot read its serial: %v", errRefused, c, real, serr)
		case linkExists:
			return "", fmt.Errorf("%w %s: it has no serial but an NVMe by-id link for the volume exists", errRefused, c)
		}
		// A Xen disk without a serial: trust the name only if EC2 gives
		// it to this volume alone on this instance.
		if err := b.soleClaim(ctx, id, inst, name); err != nil {
			return "", err
		}
		b.log.Warn("device has no serial; trusting the attachment's device name", zap.String("id", id), zap.String("device", real))
		return real, nil
	}
	return "", nil
}

// soleClaim checks that no other volume is attached to inst under name or
// its xvd↔sd rename.
func (b *Backend) soleClaim(ctx context.Context, id, inst, name string) error {
	s := suffixOf(name)
	out, err := b.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{
		{Name: aws.String("attachment.instance-id"), Values: []string{inst}},
		{Name: aws.String("attachment.device"), Values: []string{"/dev/xvd" + s, "/dev/sd" + s, "xvd" + s, "sd" + s}},
	}})
	if err != nil {
		return mapErr(err, "check who else uses "+name)
	}
	for _, v := range out.Volumes {
		if other := aws.ToString(v.VolumeId); other != id {
			return fmt.Errorf("%w %s: volume %s is also attached as %s", errRefused, name, other, name)
		}
	}
	return nil
}

// Verify implements backends.Backend: the same proof Connect made, again,
// right before the node formats or mounts dev.
func (b *Backend) Verify(ctx context.Context, id string, dev backends.Device) error {
	if !volumeIDRE.MatchString(id) {
		return notFound(id)
	}
	real, err := canonical(dev.Path)
	if err != nil {
		return fmt.Errorf("%w %s: %v", errRefused, dev.Path, err)
	}
	got, serr := b.serial(real)
	switch {
	case serr == nil && got == serialOf(id):
		return nil
	case serr == nil:
		return fmt.Errorf("%w %s: its serial is %q, not %q (volume %s)", errRefused, real, got, serialOf(id), id)
	case !errors.Is(serr, ErrNoSerial):
		return fmt.Errorf("%w %s: cannot read its serial: %v", errRefused, real, serr)
	}
	if _, err := os.Lstat(filepath.Join(b.byID, ByIDName(id))); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w %s: it has no serial but an NVMe by-id link for volume %s exists", errRefused, real, id)
	}
	inst, err := b.selfInstance(ctx)
	if err != nil {
		return err
	}
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return err
	}
	a, ok := ec2Attachment(v, inst)
	if !ok || a.State != types.VolumeAttachmentStateAttached {
		return fmt.Errorf("%w %s: volume %s is not attached to this instance", errRefused, real, id)
	}
	for _, c := range b.nameCandidates(aws.ToString(a.Device)) {
		if r, err := filepath.EvalSymlinks(c); err == nil && r == real {
			return b.soleClaim(ctx, id, inst, aws.ToString(a.Device))
		}
	}
	return fmt.Errorf("%w %s: it has no serial and is not the attachment's device %s", errRefused, real, aws.ToString(a.Device))
}

// canonical returns the /dev node of a block device given by any path to
// it: a link, or a device file bind-mounted elsewhere (a published block
// target), found through /sys/dev/block/<major>:<minor>.
func canonical(p string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", p)
	}
	if underDev(real) {
		return real, nil
	}
	sys, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	if err != nil {
		return "", err
	}
	dev := "/dev/" + filepath.Base(sys)
	var dst unix.Stat_t
	if err := unix.Stat(dev, &dst); err != nil || dst.Rdev != st.Rdev {
		return "", fmt.Errorf("%s: no /dev node with its device number", p)
	}
	return dev, nil
}

// Disconnect implements backends.Backend. An EBS device has nothing to
// release on the node: it goes away when the volume is detached.
func (b *Backend) Disconnect(ctx context.Context, id string) error { return nil }
