package ec2sim

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestConsistencyLag(t *testing.T) {
	srv, c := newSim(t, Options{})
	srv.SetLag("CreateVolume", time.Hour)
	id := createVol(t, c, "us-east-1a", 1, map[string]string{"k": "v"})
	if _, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}}); err == nil || apiCode(t, err) != "InvalidVolume.NotFound" {
		t.Fatalf("describe of a volume in its window: %v", err)
	}
	out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("tag:k"), Values: []string{"v"}}}})
	if err != nil || len(out.Volumes) != 0 {
		t.Fatalf("filtered list in the window: %+v %v", out, err)
	}
	srv.SetLag("CreateVolume", 0) // ends the window
	waitAvailable(t, c, id)

	srv.SetLag("AttachVolume", time.Hour)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdba")}); err != nil {
		t.Fatal(err)
	}
	if v := describeVol(t, c, id); len(v.Attachments) != 0 || v.State != types.VolumeStateAvailable {
		t.Fatalf("attachment described in its window: %+v", v)
	}
	// The write side already knows.
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdbb")}); err == nil || apiCode(t, err) != "VolumeInUse" {
		t.Fatalf("second attach: %v", err)
	}
	srv.SetLag("AttachVolume", 0)
	poll(t, "attached", func() bool { return attachmentState(t, c, id) == "attached" })
}

func TestThrottleBucket(t *testing.T) {
	srv, c := newSim(t, Options{})
	srv.Throttle("DescribeVolumes", 2, 0.001)
	for i := range 3 {
		_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{})
		if (i < 2) != (err == nil) {
			t.Fatalf("call %d: %v", i+1, err)
		}
		if err != nil && apiCode(t, err) != "RequestLimitExceeded" {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	// Another API has its own bucket.
	if _, err := c.DescribeAvailabilityZones(ctx(t), &ec2.DescribeAvailabilityZonesInput{}); err != nil {
		t.Fatal(err)
	}
}

func TestDocumentedDeviceNamesAndLimits(t *testing.T) {
	_, c := newSim(t, Options{StateDelay: -1, Instances: []Instance{{ID: inst1, AvailabilityZone: "us-east-1a", InstanceType: "m5.large", NetworkInterfaces: 2, InstanceStoreVolumes: 1}}})
	attach := func(dev string) error {
		id := createVol(t, c, "us-east-1a", 1, nil)
		waitAvailable(t, c, id)
		_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst1), Device: aws.String(dev)})
		return err
	}
	for _, dev := range []string{"/dev/xvddy", "/dev/xvdea", "/dev/sdba", "/dev/xvdzz"} {
		if err := attach(dev); err == nil || apiCode(t, err) != "InvalidParameterValue" {
			t.Errorf("attach as %s: %v, want InvalidParameterValue", dev, err)
		}
	}
	// m5.large: 28 shared slots - 2 ENIs - 1 instance store = 25 volumes.
	n := 0
	for _, first := range "abcd" {
		for _, second := range "abcdefghijklmnopqrstuvwx" {
			err := attach("/dev/xvd" + string(first) + string(second))
			if n < 25 && err != nil {
				t.Fatalf("attach %d: %v", n+1, err)
			}
			if n == 25 {
				if err == nil || apiCode(t, err) != "AttachmentLimitExceeded" {
					t.Fatalf("attach 26: %v, want AttachmentLimitExceeded", err)
				}
				return
			}
			n++
		}
	}
}

func TestStuckBusyAndFailures(t *testing.T) {
	srv, c := newSim(t, Options{})
	id := createVol(t, c, "us-east-1a", 1, nil)
	waitAvailable(t, c, id)
	srv.StickDevice(inst1, "/dev/xvdba")
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdba")}); err != nil {
		t.Fatal(err)
	}
	// An attachment made after it on a free name completes; the stuck
	// one does not.
	other := createVol(t, c, "us-east-1a", 1, nil)
	waitAvailable(t, c, other)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(other), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdbc")}); err != nil {
		t.Fatal(err)
	}
	poll(t, "other attached", func() bool { return attachmentState(t, c, other) == "attached" })
	if s := attachmentState(t, c, id); s != "attaching" {
		t.Fatalf("stuck attachment is %s", s)
	}
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(id), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "detached", func() bool { return attachmentState(t, c, id) == "gone" })
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdbb")}); err != nil {
		t.Fatal(err)
	}
	poll(t, "attached", func() bool { return attachmentState(t, c, id) == "attached" })
	if err := srv.SetAttachmentState(id, "busy"); err != nil {
		t.Fatal(err)
	}
	if s := attachmentState(t, c, id); s != "busy" {
		t.Fatalf("state %s", s)
	}

	srv.FailCreates(1, "kms")
	gone := createVol(t, c, "us-east-1a", 1, nil)
	poll(t, "failed create gone", func() bool {
		_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{gone}})
		return err != nil && apiCode(t, err) == "InvalidVolume.NotFound"
	})

	srv.FailSnapshots(1, "broken")
	sn, err := c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "snapshot error", func() bool {
		out, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{aws.ToString(sn.SnapshotId)}})
		return err == nil && len(out.Snapshots) == 1 && out.Snapshots[0].State == types.SnapshotStateError && aws.ToString(out.Snapshots[0].StateMessage) == "broken"
	})
}

func TestTokenExpiryAndRatios(t *testing.T) {
	srv, c := newSim(t, Options{})
	in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1), VolumeType: types.VolumeTypeGp3, ClientToken: aws.String("tok")}
	first, err := c.CreateVolume(ctx(t), in)
	if err != nil {
		t.Fatal(err)
	}
	in.Size = aws.Int32(2)
	if _, err := c.CreateVolume(ctx(t), in); err == nil || apiCode(t, err) != "IdempotentParameterMismatch" {
		t.Fatalf("reused token: %v", err)
	}
	srv.SetTokenTTL(time.Nanosecond)
	second, err := c.CreateVolume(ctx(t), in)
	if err != nil || aws.ToString(second.VolumeId) == aws.ToString(first.VolumeId) {
		t.Fatalf("expired token: %v %v", second, err)
	}
	for _, tc := range []struct {
		name string
		in   ec2.CreateVolumeInput
		code string
	}{
		{"io1 50 per GiB", ec2.CreateVolumeInput{Size: aws.Int32(10), VolumeType: types.VolumeTypeIo1, Iops: aws.Int32(501)}, "InvalidParameterValue"},
		{"io2 1000 per GiB", ec2.CreateVolumeInput{Size: aws.Int32(4), VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(4001)}, "InvalidParameterValue"},
		{"gp3 throughput per IOPS", ec2.CreateVolumeInput{Size: aws.Int32(100), VolumeType: types.VolumeTypeGp3, Throughput: aws.Int32(751)}, "InvalidParameterCombination"},
		{"gp3 64 TiB", ec2.CreateVolumeInput{Size: aws.Int32(65536), VolumeType: types.VolumeTypeGp3}, ""},
	} {
		tc.in.AvailabilityZone = aws.String("us-east-1a")
		_, err := c.CreateVolume(ctx(t), &tc.in)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code != "" && (err == nil || apiCode(t, err) != tc.code):
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
}

func TestCopyVolumes(t *testing.T) {
	srv, c := newSim(t, Options{})
	src := createVol(t, c, "us-east-1b", 3, nil)
	waitAvailable(t, c, src)
	out, err := c.CopyVolumes(ctx(t), &ec2.CopyVolumesInput{SourceVolumeId: aws.String(src), VolumeType: types.VolumeTypeGp3, ClientToken: aws.String("copy-1")})
	if err != nil || len(out.Volumes) != 1 {
		t.Fatalf("CopyVolumes: %+v %v", out, err)
	}
	cp := out.Volumes[0]
	if aws.ToString(cp.AvailabilityZone) != "us-east-1b" || aws.ToInt32(cp.Size) != 3 {
		t.Fatalf("copy %+v", cp)
	}
	again, err := c.CopyVolumes(ctx(t), &ec2.CopyVolumesInput{SourceVolumeId: aws.String(src), VolumeType: types.VolumeTypeGp3, ClientToken: aws.String("copy-1")})
	if err != nil || aws.ToString(again.Volumes[0].VolumeId) != aws.ToString(cp.VolumeId) {
		t.Fatalf("repeated token: %+v %v", again, err)
	}
	waitAvailable(t, c, aws.ToString(cp.VolumeId))
	srv.DisableCopyVolumes()
	if _, err := c.CopyVolumes(ctx(t), &ec2.CopyVolumesInput{SourceVolumeId: aws.String(src)}); err == nil || apiCode(t, err) != "UnsupportedOperation" {
		t.Fatalf("disabled CopyVolumes: %v", err)
	}
}
