package ec2sim

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

const (
	inst1 = "i-0123456789abcdef0"
	inst2 = "i-0fedcba9876543210"
	instB = "i-00000000000000bbb" // in us-east-1b
)

func testInstances() []Instance {
	return []Instance{
		{ID: inst1, AvailabilityZone: "us-east-1a"},
		{ID: inst2, AvailabilityZone: "us-east-1a", InstanceType: "c5.xlarge"},
		{ID: instB, AvailabilityZone: "us-east-1b", RootDeviceName: "/dev/xvda"},
	}
}

// newSim starts a server and returns it with an SDK client that does not
// retry (so call counts are exact).
func newSim(t *testing.T, opts Options) (*Server, *ec2.Client) {
	t.Helper()
	if opts.Instances == nil {
		opts.Instances = testInstances()[:2] // no root volume unless asked
	}
	if opts.StateDelay == 0 {
		opts.StateDelay = 20 * time.Millisecond
	}
	opts.Logf = t.Logf
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv, newClient(srv.Start(), 1)
}

func newClient(endpoint string, attempts int) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		}),
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// apiCode returns the smithy.APIError code of err, or fails the test.
func apiCode(t *testing.T, err error) string {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not a smithy.APIError", err, err)
	}
	return ae.ErrorCode()
}

func createVol(t *testing.T, c *ec2.Client, az string, size int32, tags map[string]string) string {
	t.Helper()
	in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(size), VolumeType: types.VolumeTypeGp3}
	if len(tags) > 0 {
		ts := types.TagSpecification{ResourceType: types.ResourceTypeVolume}
		for k, v := range tags {
			ts.Tags = append(ts.Tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		in.TagSpecifications = []types.TagSpecification{ts}
	}
	out, err := c.CreateVolume(ctx(t), in)
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	return aws.ToString(out.VolumeId)
}

func waitAvailable(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewVolumeAvailableWaiter(c, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	})
	if err := w.Wait(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: ids}, 5*time.Second); err != nil {
		t.Fatalf("waiting for %v available: %v", ids, err)
	}
}

func describeVol(t *testing.T, c *ec2.Client, id string) types.Volume {
	t.Helper()
	out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if err != nil {
		t.Fatalf("DescribeVolumes(%s): %v", id, err)
	}
	if len(out.Volumes) != 1 {
		t.Fatalf("DescribeVolumes(%s) returned %d volumes", id, len(out.Volumes))
	}
	return out.Volumes[0]
}

// poll calls cond until it returns true or the deadline passes.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attachmentState(t *testing.T, c *ec2.Client, id string) string {
	v := describeVol(t, c, id)
	if len(v.Attachments) == 0 {
		return "gone"
	}
	return string(v.Attachments[0].State)
}

func TestCreateVolumeWireFormatAndDefaults(t *testing.T) {
	_, c := newSim(t, Options{})
	out, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(80), VolumeType: types.VolumeTypeGp3,
		Iops: aws.Int32(4000), Throughput: aws.Int32(250), Encrypted: aws.Bool(true), KmsKeyId: aws.String("alias/k"),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{
			{Key: aws.String("CSIVolumeName"), Value: aws.String("pvc-1")},
			{Key: aws.String("ebs.csi.aws.com/cluster"), Value: aws.String("true")},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.State != types.VolumeStateCreating {
		t.Errorf("state = %q, want creating", out.State)
	}
	if !reVolumeID.MatchString(aws.ToString(out.VolumeId)) {
		t.Errorf("volume id %q malformed", aws.ToString(out.VolumeId))
	}
	if aws.ToInt32(out.Size) != 80 || aws.ToInt32(out.Iops) != 4000 || aws.ToInt32(out.Throughput) != 250 ||
		!aws.ToBool(out.Encrypted) || aws.ToString(out.KmsKeyId) != "alias/k" || out.VolumeType != types.VolumeTypeGp3 ||
		aws.ToString(out.AvailabilityZone) != "us-east-1a" || out.CreateTime == nil || out.CreateTime.IsZero() {
		t.Errorf("unexpected CreateVolume output %+v", out)
	}
	if len(out.Tags) != 2 || aws.ToString(out.Tags[0].Key) != "CSIVolumeName" || aws.ToString(out.Tags[0].Value) != "pvc-1" {
		t.Errorf("tags = %+v", out.Tags)
	}

	// Defaults: gp2 (no type), gp3 iops/throughput.
	for _, tc := range []struct {
		typ              types.VolumeType
		wantType         types.VolumeType
		wantIops, wantTP int32
	}{
		{"", types.VolumeTypeGp2, 300, 0},
		{types.VolumeTypeGp3, types.VolumeTypeGp3, 3000, 125},
		{types.VolumeTypeSc1, types.VolumeTypeSc1, 0, 0},
	} {
		size := int32(100)
		if tc.typ == types.VolumeTypeSc1 {
			size = 125
		}
		out, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(size), VolumeType: tc.typ})
		if err != nil {
			t.Fatalf("%q: %v", tc.typ, err)
		}
		if out.VolumeType != tc.wantType || aws.ToInt32(out.Iops) != tc.wantIops || aws.ToInt32(out.Throughput) != tc.wantTP {
			t.Errorf("%q: got type %q iops %d throughput %d", tc.typ, out.VolumeType, aws.ToInt32(out.Iops), aws.ToInt32(out.Throughput))
		}
	}
}

func TestVolumeBecomesAvailable(t *testing.T) {
	srv, c := newSim(t, Options{StateDelay: 150 * time.Millisecond})
	id := createVol(t, c, "us-east-1a", 10, nil)
	if got := describeVol(t, c, id).State; got != types.VolumeStateCreating {
		t.Fatalf("immediately after create: state %q, want creating", got)
	}
	srv.ResetCalls()
	waitAvailable(t, c, id)
	if got := describeVol(t, c, id).State; got != types.VolumeStateAvailable {
		t.Fatalf("state %q, want available", got)
	}
	if n := srv.Calls("DescribeVolumes"); n < 2 {
		t.Errorf("waiter polled %d times; the volume should not have been available on the first poll", n)
	}
}

func TestClientTokenIdempotency(t *testing.T) {
	srv, c := newSim(t, Options{})
	base := func() *ec2.CreateVolumeInput {
		return &ec2.CreateVolumeInput{
			ClientToken: aws.String("tok-123"), AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(10),
			VolumeType: types.VolumeTypeGp3,
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{
				{Key: aws.String("CSIVolumeName"), Value: aws.String("pvc-1")},
				{Key: aws.String("team"), Value: aws.String("a")},
			}}},
		}
	}
	first, err := c.CreateVolume(ctx(t), base())
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(first.VolumeId)

	tests := []struct {
		name     string
		mutate   func(*ec2.CreateVolumeInput)
		wantCode string // "" = same volume
	}{
		{"identical", func(*ec2.CreateVolumeInput) {}, ""},
		{"tags reordered", func(in *ec2.CreateVolumeInput) {
			slices.Reverse(in.TagSpecifications[0].Tags)
		}, ""},
		{"different size", func(in *ec2.CreateVolumeInput) { in.Size = aws.Int32(11) }, "IdempotentParameterMismatch"},
		{"different type", func(in *ec2.CreateVolumeInput) { in.VolumeType = types.VolumeTypeGp2 }, "IdempotentParameterMismatch"},
		{"different zone", func(in *ec2.CreateVolumeInput) { in.AvailabilityZone = aws.String("us-east-1b") }, "IdempotentParameterMismatch"},
		{"different tag value", func(in *ec2.CreateVolumeInput) {
			in.TagSpecifications[0].Tags[1].Value = aws.String("b")
		}, "IdempotentParameterMismatch"},
		{"encrypted added", func(in *ec2.CreateVolumeInput) { in.Encrypted = aws.Bool(true) }, "IdempotentParameterMismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mutate(in)
			out, err := c.CreateVolume(ctx(t), in)
			if tc.wantCode != "" {
				if err == nil {
					t.Fatalf("got volume %s, want %s", aws.ToString(out.VolumeId), tc.wantCode)
				}
				if got := apiCode(t, err); got != tc.wantCode {
					t.Fatalf("code %q, want %q", got, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(out.VolumeId) != id {
				t.Fatalf("got volume %s, want the original %s", aws.ToString(out.VolumeId), id)
			}
		})
	}
	if n := len(srv.Volumes()); n != 1 {
		t.Errorf("%d volumes exist, want 1", n)
	}
	// A different token makes a new volume.
	in := base()
	in.ClientToken = aws.String("tok-456")
	out, err := c.CreateVolume(ctx(t), in)
	if err != nil || aws.ToString(out.VolumeId) == id {
		t.Fatalf("new token: %v, id %s", err, aws.ToString(out.VolumeId))
	}
	// After deletion the token still names the (deleted) volume.
	waitAvailable(t, c, id)
	if _, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "volume gone", func() bool {
		_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
		return err != nil && apiCode(t, err) == "InvalidVolume.NotFound"
	})
	again, err := c.CreateVolume(ctx(t), base())
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(again.VolumeId) != id || again.State != types.VolumeStateDeleted {
		t.Errorf("token after delete: got %s/%s, want %s/deleted", aws.ToString(again.VolumeId), again.State, id)
	}
}

func TestErrorCodes(t *testing.T) {
	srv, c := newSim(t, Options{})
	volA := createVol(t, c, "us-east-1a", 10, nil)
	volA2 := createVol(t, c, "us-east-1a", 10, nil)
	volB := createVol(t, c, "us-east-1b", 10, nil)
	waitAvailable(t, c, volA, volA2, volB)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(volA), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")}); err != nil {
		t.Fatal(err)
	}
	poll(t, "attached", func() bool { return attachmentState(t, c, volA) == "attached" })

	const missingVol, missingInst, missingSnap = "vol-0000000000000dead", "i-0000000000000dead", "snap-0000000000000dead"
	tests := []struct {
		name     string
		call     func() error
		wantCode string
		wantMsg  string
	}{
		{"describe unknown volume", func() error {
			_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{volA, missingVol}})
			return err
		}, "InvalidVolume.NotFound", missingVol},
		{"describe malformed volume id", func() error {
			_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{"vol-xyz"}})
			return err
		}, "InvalidVolumeID.Malformed", ""},
		{"delete unknown volume", func() error {
			_, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(missingVol)})
			return err
		}, "InvalidVolume.NotFound", ""},
		{"delete in-use volume", func() error {
			_, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(volA)})
			return err
		}, "VolumeInUse", ""},
		{"attach in-use volume", func() error {
			_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(volA), InstanceId: aws.String(inst2), Device: aws.String("/dev/xvdab")})
			return err
		}, "VolumeInUse", ""},
		{"attach to unknown instance", func() error {
			_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(volA2), InstanceId: aws.String(missingInst), Device: aws.String("/dev/xvdab")})
			return err
		}, "InvalidInstanceID.NotFound", ""},
		{"attach with taken device name", func() error {
			_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(volA2), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")})
			return err
		}, "InvalidParameterValue", "already in use"},
		{"attach with invalid device name", func() error {
			_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(volA2), InstanceId: aws.String(inst1), Device: aws.String("/dev/nvme1n1")})
			return err
		}, "InvalidParameterValue", "not a valid EBS device name"},
		{"attach across zones", func() error {
			_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(volB), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdac")})
			return err
		}, "InvalidVolume.ZoneMismatch", ""},
		{"detach available volume", func() error {
			_, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(volA2)})
			return err
		}, "IncorrectState", ""},
		{"detach from the wrong instance", func() error {
			_, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(volA), InstanceId: aws.String(inst2)})
			return err
		}, "InvalidAttachment.NotFound", ""},
		{"describe unknown instance", func() error {
			_, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{missingInst}})
			return err
		}, "InvalidInstanceID.NotFound", ""},
		{"describe unknown snapshot", func() error {
			_, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{missingSnap}})
			return err
		}, "InvalidSnapshot.NotFound", ""},
		{"delete unknown snapshot", func() error {
			_, err := c.DeleteSnapshot(ctx(t), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(missingSnap)})
			return err
		}, "InvalidSnapshot.NotFound", ""},
		{"unknown zone", func() error {
			_, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1z"), Size: aws.Int32(1)})
			return err
		}, "InvalidParameterValue", ""},
		{"io2 without iops", func() error {
			_, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(10), VolumeType: types.VolumeTypeIo2})
			return err
		}, "MissingParameter", ""},
		{"throughput on gp2", func() error {
			_, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(10), VolumeType: types.VolumeTypeGp2, Throughput: aws.Int32(200)})
			return err
		}, "InvalidParameterCombination", ""},
		{"gp3 too large", func() error {
			_, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(70000), VolumeType: types.VolumeTypeGp3})
			return err
		}, "InvalidParameterValue", ""},
		{"unknown filter", func() error {
			_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("colour"), Values: []string{"red"}}}})
			return err
		}, "InvalidParameterValue", "colour"},
		{"modify shrink", func() error {
			_, err := c.ModifyVolume(ctx(t), &ec2.ModifyVolumeInput{VolumeId: aws.String(volA2), Size: aws.Int32(5)})
			return err
		}, "InvalidParameterValue", ""},
		{"modifications of unmodified volume", func() error {
			_, err := c.DescribeVolumesModifications(ctx(t), &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{volA2}})
			return err
		}, "InvalidVolumeModification.NotFound", ""},
		{"dry run", func() error {
			_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{DryRun: aws.Bool(true)})
			return err
		}, "DryRunOperation", ""},
		{"tag unknown volume", func() error {
			_, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{missingVol}, Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
			return err
		}, "InvalidVolume.NotFound", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatalf("succeeded, want %s", tc.wantCode)
			}
			if got := apiCode(t, err); got != tc.wantCode {
				t.Fatalf("code %q (%v), want %q", got, err, tc.wantCode)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("message %q does not contain %q", err.Error(), tc.wantMsg)
			}
		})
	}
	// None of the failed calls changed state.
	for _, v := range srv.Volumes() {
		switch v.ID {
		case volA:
			if v.State != "in-use" || v.InstanceID != inst1 || v.Device != "/dev/xvdaa" {
				t.Errorf("volA changed: %+v", v)
			}
		case volA2, volB:
			if v.State != "available" || v.InstanceID != "" {
				t.Errorf("%s changed: %+v", v.ID, v)
			}
		}
	}
}

// TestRawProtocol checks what the SDK cannot send: unknown actions and the
// raw error document and status codes.
func TestRawProtocol(t *testing.T) {
	srv, _ := newSim(t, Options{})
	post := func(form url.Values) (int, string, string) {
		t.Helper()
		resp, err := http.PostForm(srv.URL(), form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc xmlErrorResponse
		if err := xml.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatalf("decoding error document: %v", err)
		}
		if len(doc.Errors) != 1 || doc.RequestID == "" {
			t.Fatalf("bad error document %+v", doc)
		}
		return resp.StatusCode, doc.Errors[0].Code, doc.Errors[0].Message
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		wantStatus int
		wantCode   string
	}{
		{"unknown action", url.Values{"Action": {"LaunchRockets"}, "Version": {"2016-11-15"}}, 400, "InvalidAction"},
		{"missing action", url.Values{"Version": {"2016-11-15"}}, 400, "MissingAction"},
		{"missing version", url.Values{"Action": {"DescribeVolumes"}}, 400, "MissingParameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, _ := post(tc.form)
			if status != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("got %d %s, want %d %s", status, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
	srv.FailNext("DescribeVolumes", 1, "RequestLimitExceeded", "")
	srv.FailNext("DescribeVolumes", 1, "InternalError", "")
	for _, want := range []struct {
		status int
		code   string
	}{{503, "RequestLimitExceeded"}, {500, "InternalError"}} {
		status, code, _ := post(url.Values{"Action": {"DescribeVolumes"}, "Version": {"2016-11-15"}})
		if status != want.status || code != want.code {
			t.Errorf("injected fault: got %d %s, want %d %s", status, code, want.status, want.code)
		}
	}
	// The success document is namespaced and carries a requestId.
	resp, err := http.PostForm(srv.URL(), url.Values{"Action": {"DescribeAvailabilityZones"}, "Version": {"2016-11-15"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ok struct {
		XMLName   xml.Name
		RequestID string `xml:"requestId"`
	}
	if err := xml.NewDecoder(resp.Body).Decode(&ok); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || ok.XMLName.Space != Namespace || ok.XMLName.Local != "DescribeAvailabilityZonesResponse" || ok.RequestID == "" {
		t.Errorf("success document: status %d, %+v", resp.StatusCode, ok)
	}
}

func TestFaultInjectionAndCallCounts(t *testing.T) {
	srv, _ := newSim(t, Options{})
	c := newClient(srv.URL(), 3) // retries throttling and 5xx
	srv.FailNext("DescribeVolumes", 2, "RequestLimitExceeded", "")
	if _, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{}); err != nil {
		t.Fatalf("with 3 attempts and 2 injected throttles: %v", err)
	}
	if n := srv.Calls("DescribeVolumes"); n != 3 {
		t.Errorf("DescribeVolumes calls = %d, want 3 (2 throttled + 1)", n)
	}
	srv.FailNext("CreateVolume", 1, "VolumeLimitExceeded", "too many")
	_, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
	if code := apiCode(t, err); code != "VolumeLimitExceeded" {
		t.Errorf("code %q, want VolumeLimitExceeded", code)
	}
	if n := srv.Calls("CreateVolume"); n != 1 {
		t.Errorf("non-retryable code was retried: %d calls", n)
	}
	if n := len(srv.Volumes()); n != 0 {
		t.Errorf("injected failure created a volume: %d volumes", n)
	}
	srv.FailNext("AttachVolume", 3, "InternalError", "")
	_, err = c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String("vol-0000000000000dead"), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")})
	if code := apiCode(t, err); code != "InternalError" {
		t.Errorf("code %q, want InternalError", code)
	}
	counts := srv.CallCounts()
	if counts["AttachVolume"] != 3 || counts["CreateVolume"] != 1 || counts["DescribeVolumes"] != 3 {
		t.Errorf("counts = %v", counts)
	}
	srv.ResetCalls()
	if n := len(srv.CallCounts()); n != 0 {
		t.Errorf("after ResetCalls: %v", srv.CallCounts())
	}
}

func TestDescribeVolumesPaging(t *testing.T) {
	_, c := newSim(t, Options{})
	want := map[string]bool{}
	for range 12 {
		want[createVol(t, c, "us-east-1a", 1, map[string]string{"set": "paging"})] = true
	}
	createVol(t, c, "us-east-1a", 1, map[string]string{"set": "other"})

	for _, tc := range []struct {
		max       int32
		wantPages []int
	}{
		{5, []int{5, 5, 2}},
		{6, []int{6, 6}},
		{500, []int{12}},
	} {
		var pages []int
		got := map[string]bool{}
		p := ec2.NewDescribeVolumesPaginator(c, &ec2.DescribeVolumesInput{
			MaxResults: aws.Int32(tc.max),
			Filters:    []types.Filter{{Name: aws.String("tag:set"), Values: []string{"paging"}}},
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			pages = append(pages, len(out.Volumes))
			for _, v := range out.Volumes {
				if got[aws.ToString(v.VolumeId)] {
					t.Errorf("max %d: %s returned twice", tc.max, aws.ToString(v.VolumeId))
				}
				got[aws.ToString(v.VolumeId)] = true
			}
		}
		if !slices.Equal(pages, tc.wantPages) {
			t.Errorf("max %d: pages %v, want %v", tc.max, pages, tc.wantPages)
		}
		for id := range want {
			if !got[id] {
				t.Errorf("max %d: %s missing", tc.max, id)
			}
		}
		if len(got) != len(want) {
			t.Errorf("max %d: got %d volumes, want %d", tc.max, len(got), len(want))
		}
	}
	for _, tc := range []struct {
		name string
		in   *ec2.DescribeVolumesInput
		code string
	}{
		{"max too small", &ec2.DescribeVolumesInput{MaxResults: aws.Int32(3)}, "InvalidParameterValue"},
		{"max with ids", &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5), VolumeIds: []string{"vol-0000000000000dead"}}, "InvalidParameterCombination"},
		{"bad token", &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5), NextToken: aws.String("!!!")}, "InvalidPaginationToken"},
	} {
		_, err := c.DescribeVolumes(ctx(t), tc.in)
		if err == nil {
			t.Errorf("%s: succeeded", tc.name)
			continue
		}
		if got := apiCode(t, err); got != tc.code {
			t.Errorf("%s: code %q, want %q", tc.name, got, tc.code)
		}
	}
}

func TestDescribeVolumesFilters(t *testing.T) {
	_, c := newSim(t, Options{})
	v1 := createVol(t, c, "us-east-1a", 1, map[string]string{"CSIVolumeName": "pvc-1", "ebs.csi.aws.com/cluster": "true"})
	v2 := createVol(t, c, "us-east-1a", 2, map[string]string{"CSIVolumeName": "pvc-2"})
	v3 := createVol(t, c, "us-east-1b", 3, nil)
	waitAvailable(t, c, v1, v2, v3)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(v2), InstanceId: aws.String(inst2), Device: aws.String("/dev/xvdba")}); err != nil {
		t.Fatal(err)
	}
	f := func(name string, values ...string) types.Filter {
		return types.Filter{Name: aws.String(name), Values: values}
	}
	for _, tc := range []struct {
		name    string
		filters []types.Filter
		want    []string
	}{
		{"tag value", []types.Filter{f("tag:CSIVolumeName", "pvc-1")}, []string{v1}},
		{"tag wildcard", []types.Filter{f("tag:CSIVolumeName", "pvc-*")}, []string{v1, v2}},
		{"tag ORed values", []types.Filter{f("tag:CSIVolumeName", "pvc-1", "pvc-2")}, []string{v1, v2}},
		{"tag with slash key", []types.Filter{f("tag:ebs.csi.aws.com/cluster", "true")}, []string{v1}},
		{"tag-key", []types.Filter{f("tag-key", "CSIVolumeName")}, []string{v1, v2}},
		{"status in-use", []types.Filter{f("status", "in-use")}, []string{v2}},
		{"status available", []types.Filter{f("status", "available")}, []string{v1, v3}},
		{"zone", []types.Filter{f("availability-zone", "us-east-1b")}, []string{v3}},
		{"attachment instance", []types.Filter{f("attachment.instance-id", inst2)}, []string{v2}},
		{"ANDed", []types.Filter{f("tag-key", "CSIVolumeName"), f("size", "1")}, []string{v1}},
		{"no match", []types.Filter{f("tag:CSIVolumeName", "pvc-9")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: tc.filters})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range out.Volumes {
				got = append(got, aws.ToString(v.VolumeId))
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestAttachDetachStatesWithoutDevices(t *testing.T) {
	srv, c := newSim(t, Options{StateDelay: 80 * time.Millisecond, Instances: testInstances()})
	vol := createVol(t, c, "us-east-1a", 4, nil)
	waitAvailable(t, c, vol)
	att, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")})
	if err != nil {
		t.Fatal(err)
	}
	if att.State != types.VolumeAttachmentStateAttaching || aws.ToString(att.Device) != "/dev/xvdaa" || aws.ToString(att.InstanceId) != inst1 {
		t.Fatalf("AttachVolume output %+v", att)
	}
	v := describeVol(t, c, vol)
	if v.State != types.VolumeStateInUse || len(v.Attachments) != 1 || v.Attachments[0].State != types.VolumeAttachmentStateAttaching {
		t.Fatalf("right after attach: %s %+v", v.State, v.Attachments)
	}
	// The instance's block device mapping shows the attachment in flight,
	// so a device-name allocator sees the name as taken.
	di, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{inst1}})
	if err != nil {
		t.Fatal(err)
	}
	in := di.Reservations[0].Instances[0]
	if aws.ToString(in.InstanceId) != inst1 || aws.ToString(in.Placement.AvailabilityZone) != "us-east-1a" || in.State.Name != types.InstanceStateNameRunning ||
		len(in.BlockDeviceMappings) != 1 || aws.ToString(in.BlockDeviceMappings[0].DeviceName) != "/dev/xvdaa" ||
		aws.ToString(in.BlockDeviceMappings[0].Ebs.VolumeId) != vol || in.BlockDeviceMappings[0].Ebs.Status != types.AttachmentStatusAttaching {
		t.Fatalf("DescribeInstances: %+v", in)
	}
	w := ec2.NewVolumeInUseWaiter(c, func(o *ec2.VolumeInUseWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 20*time.Millisecond
	})
	if err := w.Wait(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	poll(t, "attached", func() bool { return attachmentState(t, c, vol) == "attached" })

	det, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1)})
	if err != nil {
		t.Fatal(err)
	}
	if det.State != types.VolumeAttachmentStateDetaching {
		t.Fatalf("DetachVolume state %q", det.State)
	}
	if got := attachmentState(t, c, vol); got != "detaching" {
		t.Fatalf("after detach: %s", got)
	}
	poll(t, "attachment gone", func() bool { return attachmentState(t, c, vol) == "gone" })
	if got := describeVol(t, c, vol).State; got != types.VolumeStateAvailable {
		t.Fatalf("after detach completes: %s", got)
	}
	// Root device instance: its root volume is listed as attached.
	di, err = c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{instB}})
	if err != nil {
		t.Fatal(err)
	}
	bdm := di.Reservations[0].Instances[0].BlockDeviceMappings
	if len(bdm) != 1 || aws.ToString(bdm[0].DeviceName) != "/dev/xvda" || bdm[0].Ebs.Status != types.AttachmentStatusAttached {
		t.Fatalf("root device mapping %+v", bdm)
	}
	if got := srv.Calls("DetachVolume"); got != 1 {
		t.Errorf("DetachVolume calls %d", got)
	}
}

func TestHoldAttachAndDetach(t *testing.T) {
	srv, c := newSim(t, Options{})
	vol := createVol(t, c, "us-east-1a", 1, nil)
	waitAvailable(t, c, vol)

	srv.HoldAttach(true)
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // many state delays
	if got := attachmentState(t, c, vol); got != "attaching" {
		t.Fatalf("held attach: %s, want attaching", got)
	}
	// A plain detach of an attaching volume is refused; a forced one works.
	_, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol)})
	if code := apiCode(t, err); code != "IncorrectState" {
		t.Fatalf("detach attaching: %s", code)
	}
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "forced detach", func() bool { return attachmentState(t, c, vol) == "gone" })

	// Releasing the hold completes a pending attachment.
	if _, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdab")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if got := attachmentState(t, c, vol); got != "attaching" {
		t.Fatalf("held attach: %s", got)
	}
	srv.HoldAttach(false)
	poll(t, "attached after release", func() bool { return attachmentState(t, c, vol) == "attached" })

	srv.HoldDetach(true)
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if got := attachmentState(t, c, vol); got != "detaching" {
		t.Fatalf("held detach: %s, want detaching", got)
	}
	// Repeating the detach is accepted and reports detaching.
	out, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol)})
	if err != nil || out.State != types.VolumeAttachmentStateDetaching {
		t.Fatalf("repeat detach: %v %+v", err, out)
	}
	if _, err := c.DetachVolume(ctx(t), &ec2.DetachVolumeInput{VolumeId: aws.String(vol), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "forced detach overrides hold", func() bool { return attachmentState(t, c, vol) == "gone" })
}

func TestModifyVolume(t *testing.T) {
	_, c := newSim(t, Options{StateDelay: 60 * time.Millisecond})
	vol := createVol(t, c, "us-east-1a", 10, nil)
	waitAvailable(t, c, vol)
	out, err := c.ModifyVolume(ctx(t), &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(20), Iops: aws.Int32(4000), Throughput: aws.Int32(250)})
	if err != nil {
		t.Fatal(err)
	}
	m := out.VolumeModification
	if m.ModificationState != types.VolumeModificationStateModifying || aws.ToInt32(m.TargetSize) != 20 || aws.ToInt32(m.OriginalSize) != 10 ||
		aws.ToInt32(m.TargetIops) != 4000 || aws.ToInt32(m.OriginalIops) != 3000 || aws.ToInt32(m.TargetThroughput) != 250 {
		t.Fatalf("ModifyVolume output %+v", m)
	}
	_, err = c.ModifyVolume(ctx(t), &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(30)})
	if code := apiCode(t, err); code != "IncorrectModificationState" {
		t.Fatalf("second modification: %s", code)
	}
	states := map[types.VolumeModificationState]bool{}
	poll(t, "modification completed", func() bool {
		out, err := c.DescribeVolumesModifications(ctx(t), &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{vol}})
		if err != nil {
			t.Fatal(err)
		}
		st := out.VolumesModifications[0].ModificationState
		states[st] = true
		return st == types.VolumeModificationStateCompleted
	})
	if !states[types.VolumeModificationStateOptimizing] {
		t.Errorf("never saw optimizing: %v", states)
	}
	v := describeVol(t, c, vol)
	if aws.ToInt32(v.Size) != 20 || aws.ToInt32(v.Iops) != 4000 || aws.ToInt32(v.Throughput) != 250 {
		t.Errorf("after modification: size %d iops %d throughput %d", aws.ToInt32(v.Size), aws.ToInt32(v.Iops), aws.ToInt32(v.Throughput))
	}
	// gp3 → io2 keeps size, requires iops.
	if _, err := c.ModifyVolume(ctx(t), &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), VolumeType: types.VolumeTypeIo2, Iops: aws.Int32(1000)}); err != nil {
		t.Fatal(err)
	}
	flt, err := c.DescribeVolumesModifications(ctx(t), &ec2.DescribeVolumesModificationsInput{
		Filters: []types.Filter{{Name: aws.String("modification-state"), Values: []string{"modifying", "optimizing"}}},
	})
	if err != nil || len(flt.VolumesModifications) != 1 || flt.VolumesModifications[0].TargetVolumeType != types.VolumeTypeIo2 {
		t.Fatalf("filtered modifications: %v %+v", err, flt)
	}
}

func TestSnapshots(t *testing.T) {
	srv, c := newSim(t, Options{})
	vol := createVol(t, c, "us-east-1a", 7, nil)
	waitAvailable(t, c, vol)
	var ids []string
	for i := range 7 {
		name := "snap-name-" + string(rune('a'+i))
		out, err := c.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{
			VolumeId: aws.String(vol), Description: aws.String("d"),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot, Tags: []types.Tag{{Key: aws.String("CSIVolumeSnapshotName"), Value: aws.String(name)}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if out.State != types.SnapshotStatePending || aws.ToString(out.VolumeId) != vol || aws.ToInt32(out.VolumeSize) != 7 {
			t.Fatalf("CreateSnapshot output %+v", out)
		}
		ids = append(ids, aws.ToString(out.SnapshotId))
	}
	w := ec2.NewSnapshotCompletedWaiter(c, func(o *ec2.SnapshotCompletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 20*time.Millisecond
	})
	if err := w.Wait(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: ids}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []types.Filter{{Name: aws.String("tag:CSIVolumeSnapshotName"), Values: []string{"snap-name-c"}}},
	})
	if err != nil || len(out.Snapshots) != 1 || aws.ToString(out.Snapshots[0].SnapshotId) != ids[2] || out.Snapshots[0].State != types.SnapshotStateCompleted {
		t.Fatalf("tag filter: %v %+v", err, out)
	}
	var pages []int
	p := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{MaxResults: aws.Int32(5), Filters: []types.Filter{{Name: aws.String("volume-id"), Values: []string{vol}}}})
	seen := map[string]bool{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page.Snapshots))
		for _, s := range page.Snapshots {
			seen[aws.ToString(s.SnapshotId)] = true
		}
	}
	if !slices.Equal(pages, []int{5, 2}) || len(seen) != 7 {
		t.Fatalf("snapshot pages %v, %d distinct", pages, len(seen))
	}
	// A volume restored from a snapshot takes its size.
	rv, err := c.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), SnapshotId: aws.String(ids[0])})
	if err != nil || aws.ToInt32(rv.Size) != 7 || aws.ToString(rv.SnapshotId) != ids[0] {
		t.Fatalf("volume from snapshot: %v %+v", err, rv)
	}
	if _, err := c.DeleteSnapshot(ctx(t), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(ids[1])}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeSnapshots(ctx(t), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{ids[1]}})
	if code := apiCode(t, err); code != "InvalidSnapshot.NotFound" {
		t.Fatalf("deleted snapshot: %s", code)
	}
	if n := srv.Calls("CreateSnapshot"); n != 7 {
		t.Errorf("CreateSnapshot calls %d", n)
	}
}

func TestTags(t *testing.T) {
	_, c := newSim(t, Options{})
	vol := createVol(t, c, "us-east-1a", 1, map[string]string{"a": "1", "b": "2", "c": "3"})
	if _, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{vol}, Tags: []types.Tag{{Key: aws.String("d"), Value: aws.String("4")}, {Key: aws.String("a"), Value: aws.String("one")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteTags(ctx(t), &ec2.DeleteTagsInput{Resources: []string{vol}, Tags: []types.Tag{
		{Key: aws.String("b")},                          // any value
		{Key: aws.String("c"), Value: aws.String("no")}, // value mismatch: kept
	}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range describeVol(t, c, vol).Tags {
		got[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	want := map[string]string{"a": "one", "c": "3", "d": "4"}
	if len(got) != len(want) {
		t.Fatalf("tags %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("tags %v, want %v", got, want)
		}
	}
	_, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{vol}, Tags: []types.Tag{{Key: aws.String("aws:reserved"), Value: aws.String("x")}}})
	if code := apiCode(t, err); code != "InvalidParameterValue" {
		t.Errorf("aws: prefix: %s", code)
	}
}

func TestDescribeAvailabilityZones(t *testing.T) {
	_, c := newSim(t, Options{Region: "eu-west-2", Zones: []string{"eu-west-2a", "eu-west-2b"}, Instances: []Instance{}})
	out, err := c.DescribeAvailabilityZones(ctx(t), &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, z := range out.AvailabilityZones {
		names = append(names, aws.ToString(z.ZoneName))
		if aws.ToString(z.RegionName) != "eu-west-2" || z.State != types.AvailabilityZoneStateAvailable {
			t.Errorf("zone %+v", z)
		}
	}
	if !slices.Equal(names, []string{"eu-west-2a", "eu-west-2b"}) || aws.ToString(out.AvailabilityZones[1].ZoneId) != "euw2-az2" {
		t.Fatalf("zones %v (%s)", names, aws.ToString(out.AvailabilityZones[1].ZoneId))
	}
	_, err = c.DescribeAvailabilityZones(ctx(t), &ec2.DescribeAvailabilityZonesInput{ZoneNames: []string{"eu-west-2q"}})
	if code := apiCode(t, err); code != "InvalidParameterValue" {
		t.Errorf("unknown zone: %s", code)
	}
}

func TestNewRejectsBadInstances(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Instance
	}{
		{"malformed id", []Instance{{ID: "node-1", AvailabilityZone: "us-east-1a"}}},
		{"unknown zone", []Instance{{ID: inst1, AvailabilityZone: "eu-west-1a"}}},
		{"duplicate", []Instance{{ID: inst1, AvailabilityZone: "us-east-1a"}, {ID: inst1, AvailabilityZone: "us-east-1a"}}},
		{"bad root device", []Instance{{ID: inst1, AvailabilityZone: "us-east-1a", RootDeviceName: "sda"}}},
	} {
		if _, err := New(Options{Instances: tc.in}); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

func TestCreatingAndDeletingStates(t *testing.T) {
	_, c := newSim(t, Options{StateDelay: 200 * time.Millisecond})
	vol := createVol(t, c, "us-east-1a", 1, nil)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"attach creating", func() error {
			_, err := c.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst1), Device: aws.String("/dev/xvdaa")})
			return err
		}},
		{"delete creating", func() error {
			_, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
			return err
		}},
	} {
		if code := apiCode(t, tc.call()); code != "IncorrectState" {
			t.Errorf("%s: %s, want IncorrectState", tc.name, code)
		}
	}
	waitAvailable(t, c, vol)
	if _, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	if got := describeVol(t, c, vol).State; got != types.VolumeStateDeleting {
		t.Fatalf("right after delete: %s, want deleting", got)
	}
	w := ec2.NewVolumeDeletedWaiter(c, func(o *ec2.VolumeDeletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 20*time.Millisecond
	})
	if err := w.Wait(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := c.DeleteVolume(ctx(t), &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
	if code := apiCode(t, err); code != "InvalidVolume.NotFound" {
		t.Fatalf("second delete: %s", code)
	}
}
