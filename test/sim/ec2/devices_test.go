package ec2sim

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// recordingDevices records Devices calls; failAttach makes Attach fail.
type recordingDevices struct {
	mu         sync.Mutex
	calls      []string
	failAttach bool
	closed     bool
}

func (r *recordingDevices) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recordingDevices) Attach(inst, vol, dev string, size int64) error {
	r.add(fmt.Sprintf("attach %s %s %s %d", inst, vol, dev, size))
	if r.failAttach {
		return errors.New("no device for you")
	}
	return nil
}
func (r *recordingDevices) Detach(inst, vol string) error {
	r.add("detach " + inst + " " + vol)
	return nil
}
func (r *recordingDevices) Resize(vol string, size int64) error {
	r.add(fmt.Sprintf("resize %s %d", vol, size))
	return nil
}
func (r *recordingDevices) Delete(vol string) error { r.add("delete " + vol); return nil }
func (r *recordingDevices) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recordingDevices) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func TestDevicesCallSequence(t *testing.T) {
	dev := &recordingDevices{}
	srv, c := newSim(t, Options{Devices: dev})
	vol := createVol(t, c, "us-east-1a", 2, nil)
	waitAvailable(t, c, vol)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")}); err != nil {
		t.Fatal(err)
	}
	poll(t, "attached", func() bool { return attachmentState(t, c, vol) == "attached" })
	if _, err := c.ModifyVolume(ctx(t), &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "resized", func() bool { return aws.ToInt32(describeVol(t, c, vol).Size) == 3 })
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "detached", func() bool { return attachmentState(t, c, vol) == "gone" })
	if _, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "deleted", func() bool { return len(srv.Volumes()) == 0 })
	want := []string{
		fmt.Sprintf("attach %s %s /dev/xvdaa %d", inst1, vol, 2*gib),
		fmt.Sprintf("resize %s %d", vol, 3*gib),
		"detach " + inst1 + " " + vol,
		"delete " + vol,
	}
	if got := dev.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("Devices calls\n got %q\nwant %q", got, want)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if !dev.closed {
		t.Errorf("Server.Close did not close the io.Closer Devices")
	}
}

func TestDeviceAttachFailureSticksInAttaching(t *testing.T) {
	dev := &recordingDevices{failAttach: true}
	srv, c := newSim(t, Options{Devices: dev})
	vol := createVol(t, c, "us-east-1a", 1, nil)
	waitAvailable(t, c, vol)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")}); err != nil {
		t.Fatal(err)
	}
	poll(t, "device error", func() bool { return len(srv.DeviceErrors()) == 1 })
	if got := attachmentState(t, c, vol); got != "attaching" {
		t.Fatalf("state %s, want attaching", got)
	}
	// Force detach clears it without calling Devices.Detach (nothing appeared).
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "gone", func() bool { return attachmentState(t, c, vol) == "gone" })
	for _, call := range dev.snapshot() {
		if call[:6] == "detach" {
			t.Errorf("Devices.Detach called for a device that never appeared: %q", call)
		}
	}
}
