package ec2sim

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

func TestIMDSv2ThroughSDK(t *testing.T) {
	srv, _ := newSim(t, Options{Instances: testInstances()})
	for _, tc := range []struct {
		id, az, typ string
	}{
		{inst1, "us-east-1a", "m5.large"},
		{inst2, "us-east-1a", "c5.xlarge"},
		{instB, "us-east-1b", "m5.large"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			cli := imds.New(imds.Options{Endpoint: srv.IMDSURL(tc.id)})
			doc, err := cli.GetInstanceIdentityDocument(ctx(t), &imds.GetInstanceIdentityDocumentInput{})
			if err != nil {
				t.Fatal(err)
			}
			if doc.InstanceID != tc.id || doc.AvailabilityZone != tc.az || doc.Region != "us-east-1" ||
				doc.InstanceType != tc.typ || doc.AccountID != AccountID || doc.PendingTime.IsZero() {
				t.Fatalf("identity document %+v", doc.InstanceIdentityDocument)
			}
			for path, want := range map[string]string{
				"instance-id":                 tc.id,
				"placement/availability-zone": tc.az,
				"instance-type":               tc.typ,
			} {
				out, err := cli.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: path})
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				b, _ := io.ReadAll(out.Content)
				out.Content.Close()
				if string(b) != want {
					t.Errorf("%s = %q, want %q", path, b, want)
				}
			}
			reg, err := cli.GetRegion(ctx(t), &imds.GetRegionInput{})
			if err != nil || reg.Region != "us-east-1" {
				t.Errorf("GetRegion: %v %+v", err, reg)
			}
			if _, err := cli.GetMetadata(ctx(t), &imds.GetMetadataInput{Path: "outpost-arn"}); err == nil {
				t.Errorf("outpost-arn: want an error (404), got none")
			}
		})
	}
	// Asked twice, the URL of one instance is the same; two instances get
	// different ones.
	first, again, other := srv.IMDSURL(inst1), srv.IMDSURL(inst1), srv.IMDSURL(inst2)
	if first != again {
		t.Errorf("IMDSURL(%s) changed between calls: %q, then %q", inst1, first, again)
	}
	if first == other {
		t.Errorf("IMDSURL is %q for both %s and %s", first, inst1, inst2)
	}
}

func TestIMDSv2RawProtocol(t *testing.T) {
	srv, _ := newSim(t, Options{})
	u1, u2 := srv.IMDSURL(inst1), srv.IMDSURL(inst2)
	do := func(method, url string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const ttlH, tokH = "X-aws-ec2-metadata-token-ttl-seconds", "X-aws-ec2-metadata-token"
	st, tok := do("PUT", u1+"/latest/api/token", map[string]string{ttlH: "60"})
	if st != 200 || tok == "" {
		t.Fatalf("token: %d %q", st, tok)
	}
	for _, tc := range []struct {
		name       string
		method     string
		url        string
		hdr        map[string]string
		wantStatus int
		wantBody   string
	}{
		{"token without ttl", "PUT", u1 + "/latest/api/token", nil, 400, ""},
		{"token with ttl too large", "PUT", u1 + "/latest/api/token", map[string]string{ttlH: "21601"}, 400, ""},
		{"IMDSv1 GET refused", "GET", u1 + "/latest/meta-data/instance-id", nil, 401, ""},
		{"bogus token", "GET", u1 + "/latest/meta-data/instance-id", map[string]string{tokH: "nope"}, 401, ""},
		{"token of another instance", "GET", u2 + "/latest/meta-data/instance-id", map[string]string{tokH: tok}, 401, ""},
		{"instance-id", "GET", u1 + "/latest/meta-data/instance-id", map[string]string{tokH: tok}, 200, inst1},
		{"az", "GET", u1 + "/latest/meta-data/placement/availability-zone", map[string]string{tokH: tok}, 200, "us-east-1a"},
		{"document", "GET", u1 + "/latest/dynamic/instance-identity/document", map[string]string{tokH: tok}, 200, `"instanceId": "` + inst1 + `"`},
		{"unknown path", "GET", u1 + "/latest/meta-data/iam/info", map[string]string{tokH: tok}, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := do(tc.method, tc.url, tc.hdr)
			if st != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", st, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Errorf("IMDS of an unknown instance did not panic")
		}
	}()
	srv.IMDS("i-0000000000000dead")
}
