package ec2sim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func waitState(t *testing.T, s *Server, id, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.InstanceState(id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %s, never %s", id, s.InstanceState(id), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestInstanceStatesThroughTheSDK: the states and their codes as
// DescribeInstances reports them, the instance-state-name filter, the
// transitions that are refused, and the admin endpoint.
func TestInstanceStatesThroughTheSDK(t *testing.T) {
	s, c := newSim(t, Options{})
	stateOf := func(id string) types.InstanceState {
		t.Helper()
		out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
			t.Fatalf("DescribeInstances %s: %v %+v", id, err, out)
		}
		return *out.Reservations[0].Instances[0].State
	}
	if st := stateOf(inst1); st.Name != types.InstanceStateNameRunning || aws.ToInt32(st.Code) != 16 {
		t.Fatalf("a new instance is %s (%d)", st.Name, aws.ToInt32(st.Code))
	}
	if err := s.StopInstance(inst1); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(inst1); st.Name != types.InstanceStateNameStopping || aws.ToInt32(st.Code) != 64 {
		t.Fatalf("right after stop: %s (%d)", st.Name, aws.ToInt32(st.Code))
	}
	waitState(t, s, inst1, StateStopped)
	if st := stateOf(inst1); aws.ToInt32(st.Code) != 80 {
		t.Fatalf("stopped has code %d", aws.ToInt32(st.Code))
	}
	if err := s.StopInstance(inst1); err == nil {
		t.Fatal("a stopped instance was stopped again")
	}
	out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"stopped"}}}})
	if err != nil || len(out.Reservations) != 1 || aws.ToString(out.Reservations[0].Instances[0].InstanceId) != inst1 {
		t.Fatalf("filter instance-state-name=stopped: %v %+v", err, out)
	}

	admin := httptest.NewServer(s.AdminHandler())
	defer admin.Close()
	for _, step := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{http.MethodPost, "/instances/" + inst1 + "/start", "", http.StatusNoContent, StateRunning},
		{http.MethodPost, "/instances/" + inst1 + "/terminate", "", http.StatusNoContent, StateTerminated},
		{http.MethodPost, "/instances/" + inst1 + "/start", "", http.StatusConflict, StateTerminated},
		{http.MethodPut, "/instances/" + inst2 + "/state", "shutting-down", http.StatusNoContent, ""},
		{http.MethodPut, "/instances/" + inst2 + "/state", "asleep", http.StatusConflict, ""},
		{http.MethodPost, "/instances/i-00000000deadbeef/stop", "", http.StatusConflict, ""},
	} {
		req, _ := http.NewRequest(step.method, admin.URL+step.path, strings.NewReader(step.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != step.status {
			t.Fatalf("%s %s: %s, want %d", step.method, step.path, resp.Status, step.status)
		}
		if step.want != "" {
			waitState(t, s, inst1, step.want)
		}
	}
	if st := stateOf(inst2); st.Name != types.InstanceStateNameShuttingDown || aws.ToInt32(st.Code) != 32 {
		t.Fatalf("set state: %s (%d)", st.Name, aws.ToInt32(st.Code))
	}
}
