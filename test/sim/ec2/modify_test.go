package ec2sim

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// modifyDone modifies the volume and waits for the modification to
// complete, as a caller must before the next one.
func modifyDone(t *testing.T, c *ec2.Client, vol string, in *ec2.ModifyVolumeInput) error {
	t.Helper()
	in.VolumeId = aws.String(vol)
	if _, err := c.ModifyVolume(ctx(t), in); err != nil {
		return err
	}
	poll(t, "modification completed", func() bool {
		out, err := c.DescribeVolumesModifications(ctx(t), &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{vol}})
		return err == nil && out.VolumesModifications[0].ModificationState == types.VolumeModificationStateCompleted
	})
	return nil
}

func TestModificationRateLimit(t *testing.T) {
	s, c := newSim(t, Options{StateDelay: -1})
	vol := createVol(t, c, "us-east-1a", 10, nil)
	other := createVol(t, c, "us-east-1a", 10, nil)
	waitAvailable(t, c, vol, other)
	shapes := []*ec2.ModifyVolumeInput{
		{Iops: aws.Int32(4000)},
		{Throughput: aws.Int32(250)},
		{VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(5000)},
		{Size: aws.Int32(20)},
	}
	for i, in := range shapes {
		if err := modifyDone(t, c, vol, in); err != nil {
			t.Fatalf("modification %d: %v", i+1, err)
		}
	}
	err := modifyDone(t, c, vol, &ec2.ModifyVolumeInput{Iops: aws.Int32(6000)})
	if code := apiCode(t, err); code != "VolumeModificationRateExceeded" {
		t.Fatalf("fifth modification in 24 h: %v", err)
	}
	// The limit is per volume.
	if err := modifyDone(t, c, other, &ec2.ModifyVolumeInput{Iops: aws.Int32(4000)}); err != nil {
		t.Fatalf("another volume: %v", err)
	}
	// 23 hours on, the first is still inside the window; 24 hours on it
	// is not, and one more is allowed.
	if err := s.AgeModifications(vol, 23*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := modifyDone(t, c, vol, &ec2.ModifyVolumeInput{Iops: aws.Int32(6000)}); apiCode(t, err) != "VolumeModificationRateExceeded" {
		t.Fatalf("after 23 h: %v", err)
	}
	if err := s.AgeModifications(vol, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := modifyDone(t, c, vol, &ec2.ModifyVolumeInput{Iops: aws.Int32(6000)}); err != nil {
		t.Fatalf("after 24 h: %v", err)
	}
	// All four old ones have left the window and the refused calls never
	// counted: three more fit, and the next is refused again.
	for _, iops := range []int32{7000, 8000, 9000} {
		if err := modifyDone(t, c, vol, &ec2.ModifyVolumeInput{Iops: aws.Int32(iops)}); err != nil {
			t.Fatalf("iops %d: %v", iops, err)
		}
	}
	if err := modifyDone(t, c, vol, &ec2.ModifyVolumeInput{Iops: aws.Int32(10000)}); apiCode(t, err) != "VolumeModificationRateExceeded" {
		t.Fatalf("fifth in the new window: %v", err)
	}
}

func TestVolumeErrorState(t *testing.T) {
	s, c := newSim(t, Options{StateDelay: -1})
	vol := createVol(t, c, "us-east-1a", 10, nil)
	waitAvailable(t, c, vol)
	if err := s.SetVolumeError(vol, true); err != nil {
		t.Fatal(err)
	}
	if st := describeVol(t, c, vol).State; st != types.VolumeStateError {
		t.Fatalf("state %s, want error", st)
	}
	_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(testInstances()[0].ID), Device: aws.String("/dev/xvdf")})
	if apiCode(t, err) != "IncorrectState" {
		t.Fatalf("attach of a failed volume: %v", err)
	}
	if err := modifyDone(t, c, vol, &ec2.ModifyVolumeInput{Iops: aws.Int32(4000)}); apiCode(t, err) != "IncorrectState" {
		t.Fatalf("modify of a failed volume: %v", err)
	}
	if err := s.SetVolumeError(vol, false); err != nil {
		t.Fatal(err)
	}
	if st := describeVol(t, c, vol).State; st != types.VolumeStateAvailable {
		t.Fatalf("state %s after recovery, want available", st)
	}
	if err := s.SetVolumeError("vol-00000000000000000", true); err == nil {
		t.Fatal("SetVolumeError of a missing volume succeeded")
	}
}
