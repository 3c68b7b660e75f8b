package ec2sim

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// code is apiCode that allows success ("").
func code(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	return apiCode(t, err)
}

func TestRestrictedCallers(t *testing.T) {
	srv, full := newSim(t, Options{})
	id := createVol(t, full, "us-east-1a", 1, nil)
	srv.Restrict("AKIDNONE")
	srv.Restrict("AKIDLOOK", "DescribeVolumes")
	as := func(key string) *ec2.Client {
		return ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()),
			Credentials: credentials.NewStaticCredentialsProvider(key, "SECRET", "")})
	}
	for _, tc := range []struct {
		key          string
		look, tagged string // error codes, "" for success
	}{
		{"AKID", "", ""},
		{"AKIDNONE", "UnauthorizedOperation", "UnauthorizedOperation"},
		{"AKIDLOOK", "", "UnauthorizedOperation"},
	} {
		c := as(tc.key)
		_, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
		if got := code(t, err); got != tc.look {
			t.Errorf("%s DescribeVolumes: %q, want %q", tc.key, got, tc.look)
		}
		_, err = c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{id}, Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
		if got := code(t, err); got != tc.tagged {
			t.Errorf("%s CreateTags: %q, want %q", tc.key, got, tc.tagged)
		}
	}
	if got := srv.CallsBy("AKIDNONE"); got["DescribeVolumes"] < 1 || got["CreateTags"] < 1 {
		t.Errorf("calls by AKIDNONE: %v", got)
	}
	if got := srv.CallsBy("AKIDNOBODY"); len(got) != 0 {
		t.Errorf("calls by a key never used: %v", got)
	}
}

func TestFilterValueLimit(t *testing.T) {
	_, c := newSim(t, Options{})
	id := createVol(t, c, "us-east-1a", 1, nil)
	for _, n := range []int{1, 200, 201} {
		vals := []string{id}
		for i := 1; i < n; i++ {
			vals = append(vals, fmt.Sprintf("vol-%017x", i))
		}
		out, err := c.DescribeVolumes(ctx(t), &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("volume-id"), Values: vals}}})
		switch {
		case n <= 200 && (err != nil || len(out.Volumes) != 1):
			t.Errorf("%d filter values: %v %v", n, out, err)
		case n > 200 && code(t, err) != "InvalidParameterValue":
			t.Errorf("%d filter values: %v, want InvalidParameterValue", n, err)
		}
	}
}
