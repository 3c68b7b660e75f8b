package ec2sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Instance states as DescribeInstances reports them, with their codes.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
)

var stateCodes = map[string]int32{
	StatePending: 0, StateRunning: 16, StateShuttingDown: 32,
	StateTerminated: 48, StateStopping: 64, StateStopped: 80,
}

// stateOf returns the instance's state; the zero value is running, so
// instances made before states were modelled keep working.
func (in *instance) stateOf() string {
	if in.state == "" {
		return StateRunning
	}
	return in.state
}

// InstanceState returns the state of instance id, or "" if there is none.
func (s *Server) InstanceState(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.instances[id]; ok {
		return in.stateOf()
	}
	return ""
}

// StopInstance moves a running instance through stopping to stopped, as
// StopInstances does: stopping first, stopped after the state delay. Its
// EBS volumes stay attached (EC2 keeps them attached to a stopped
// instance; they can be detached, without Force, while it is stopped).
func (s *Server) StopInstance(id string) error {
	return s.transition(id, StateRunning, StateStopping, StateStopped, nil)
}

// StartInstance moves a stopped instance through pending to running.
func (s *Server) StartInstance(id string) error {
	return s.transition(id, StateStopped, StatePending, StateRunning, nil)
}

// TerminateInstance moves a running or stopped instance through
// shutting-down to terminated. While it shuts down its volumes stay
// attached (the guest may still be writing); once it is terminated EC2
// detaches them, deleting those marked DeleteOnTermination (the root
// volume) and leaving the others available. The detach takes the usual
// state delay and, like any non-forced detach, is held by HoldDetach, so
// a test can see a terminated instance whose attachment is still
// "detaching".
func (s *Server) TerminateInstance(id string) error {
	return s.transition(id, "", StateShuttingDown, StateTerminated, func() {
		for _, v := range s.volumes {
			a := v.att
			if a == nil || a.instanceID != id {
				continue
			}
			if a.state != "detaching" {
				a.state = "detaching"
			}
			if !a.scheduled && !s.holdDetach {
				s.scheduleDetach(v, a, false)
			}
			if a.deleteOnTermination {
				s.deleteOnDetach(v, a)
			}
		}
	})
}

// deleteOnDetach deletes v once attachment a is gone. Callers hold s.mu.
func (s *Server) deleteOnDetach(v *volume, a *attachment) {
	s.after(func() {
		if v.att == a {
			s.deleteOnDetach(v, a)
			return
		}
		if v.state == "available" {
			v.state = "deleting"
			s.after(func() { delete(s.volumes, v.id) })
		}
	})
}

// SetInstanceState puts an instance straight into state, without the
// transitions and side effects of Stop/Start/TerminateInstance: for tests
// that need an instance to sit in "stopping" or "shutting-down".
func (s *Server) SetInstanceState(id, state string) error {
	if _, ok := stateCodes[state]; !ok {
		return fmt.Errorf("ec2sim: unknown instance state %q", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("ec2sim: no instance %s", id)
	}
	in.state = state
	return nil
}

// transition checks that instance id is in from ("" = anything but
// terminated), puts it in via at once and in to after the state delay,
// then runs then (under s.mu).
func (s *Server) transition(id, from, via, to string, then func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("ec2sim: no instance %s", id)
	}
	cur := in.stateOf()
	if (from != "" && cur != from) || (from == "" && (cur == StateTerminated || cur == StateShuttingDown)) {
		return fmt.Errorf("ec2sim: instance %s is %s; cannot go to %s", id, cur, to)
	}
	in.state = via
	s.after(func() {
		if in.state != via {
			return
		}
		in.state = to
		if then != nil {
			then()
		}
	})
	return nil
}

// AdminHandler serves the lifecycle hooks over HTTP for a server that runs
// as a process of its own (cmd/ec2sim):
//
//	POST /instances/<id>/stop|start|terminate
//	PUT  /instances/<id>/state   body: the state name
//	GET  /instances/<id>         {"id":…,"state":…}
//	PUT  /hold-detach            body: true or false (HoldDetach)
func (s *Server) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold-detach" && r.Method == http.MethodPut {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 16))
			switch strings.TrimSpace(string(body)) {
			case "true":
				s.HoldDetach(true)
			case "false":
				s.HoldDetach(false)
			default:
				http.Error(w, "want true or false", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/instances/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		id, verb, _ := strings.Cut(rest, "/")
		var err error
		switch {
		case r.Method == http.MethodGet && verb == "":
			st := s.InstanceState(id)
			if st == "" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "state": st})
			return
		case r.Method == http.MethodPost && verb == "stop":
			err = s.StopInstance(id)
		case r.Method == http.MethodPost && verb == "start":
			err = s.StartInstance(id)
		case r.Method == http.MethodPost && verb == "terminate":
			err = s.TerminateInstance(id)
		case r.Method == http.MethodPut && verb == "state":
			body, _ := io.ReadAll(io.LimitReader(r.Body, 64))
			err = s.SetInstanceState(id, strings.TrimSpace(string(body)))
		default:
			http.Error(w, "unknown admin request", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
