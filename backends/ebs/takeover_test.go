package ebs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

func withEvents(r *harness.Events) func(*Options) { return func(o *Options) { o.Events = r } }

// waitInstance waits until the simulated instance reaches state.
func (e *env) waitInstance(id, state string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.sim.InstanceState(id) != state {
		if time.Now().After(deadline) {
			e.t.Fatalf("instance %s is %s, never %s", id, e.sim.InstanceState(id), state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTakeoverFromAHolderThatCannotWrite: a volume attached to an
// instance moves to another instance on its own exactly when EC2 reports
// the holder stopped or terminated, through ControllerPublish (the
// controller) and through the node's own attach (the Mesos volume/csi
// isolator); in every other state the attach is refused with a message
// that names the holder, its state and the operator's command, and the
// volume stays where it is.
func TestTakeoverFromAHolderThatCannotWrite(t *testing.T) {
	cases := []struct {
		name string
		// kill puts the holder (inst1) into its state.
		kill   func(e *env)
		byNode bool
		// proof is the takeover's proof; "" means refused.
		proof string
		// refusal must appear in the refusal's message.
		refusal string
	}{
		{name: "stopped", kill: func(e *env) { e.stop(inst1) }, proof: ProofInstanceStopped},
		{name: "stopped, the node attaches itself", kill: func(e *env) { e.stop(inst1) }, byNode: true, proof: ProofInstanceStopped},
		{name: "stopped, its detach never completes", kill: func(e *env) {
			e.stop(inst1)
			e.sim.HoldDetach(true) // only a forced detach gets through
		}, proof: ProofInstanceStopped},
		{name: "terminated before EC2 detached the volume", kill: func(e *env) {
			e.sim.HoldDetach(true)
			if err := e.sim.TerminateInstance(inst1); err != nil {
				e.t.Fatal(err)
			}
			e.waitInstance(inst1, ec2sim.StateTerminated)
		}, proof: ProofInstanceTerminated},
		{name: "running", kill: func(e *env) {}, refusal: "which is running"},
		{name: "pending", kill: func(e *env) { e.setState(inst1, ec2sim.StatePending) }, refusal: "which is pending"},
		{name: "stopping", kill: func(e *env) { e.setState(inst1, ec2sim.StateStopping) }, refusal: "which is stopping"},
		{name: "shutting-down", kill: func(e *env) {
			e.setState(inst1, ec2sim.StateShuttingDown)
		}, refusal: "which is shutting-down"},
		{name: "running, the node attaches itself", kill: func(e *env) {}, byNode: true, refusal: "which is running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rec := harness.NewEvents()
			cfg := e.config("c1", "")
			cfg.AttachTimeout = "3s"
			ctrl := e.backend(cfg, "", withEvents(rec))
			taker := ctrl
			if tc.byNode {
				taker = e.backend(e.config("c1", inst2), inst2, withEvents(rec))
			}
			v := create(t, ctrl, "moving", 1, nil)
			attach(t, ctrl, v.ID, inst1, false)
			tc.kill(e)

			pc, err := taker.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter, ByNode: tc.byNode})
			holder, _, state := e.attachment(v.ID)
			if tc.proof == "" {
				if !errors.Is(err, backends.ErrConflict) {
					t.Fatalf("attach while the holder is %s: %v, want ErrConflict", e.sim.InstanceState(inst1), err)
				}
				for _, want := range []string{inst1, tc.refusal, "force-detach --volume ebs/" + v.ID + " --node " + inst1} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("refusal %q does not say %q", err, want)
					}
				}
				if holder != inst1 || state != "attached" {
					t.Fatalf("after a refusal the volume is on %q (%s), want still attached to %s", holder, state, inst1)
				}
				if got := rec.Takeovers(); len(got) != 0 {
					t.Fatalf("a refusal reported takeovers %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("attach after the holder became %s: %v", e.sim.InstanceState(inst1), err)
			}
			if holder != inst2 || state != "attached" {
				t.Fatalf("after the takeover the volume is on %q (%s), want attached to %s", holder, state, inst2)
			}
			want := backends.Takeover{Backend: "ebs", VolumeID: v.ID, From: inst1, To: inst2, Proof: tc.proof}
			if got := rec.Takeovers(); len(got) != 1 || got[0] != want {
				t.Fatalf("events %+v, want exactly %+v", got, want)
			}
			// The new holder is recorded, and a retry changes nothing.
			got, err := ctrl.Get(ctx(t), v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := got.AttachedTo(inst2); !ok || len(got.Attachments) != 1 || a.ByNode != tc.byNode {
				t.Fatalf("attachments after the takeover: %+v", got.Attachments)
			}
			if pc2 := attach(t, taker, v.ID, inst2, tc.byNode); pc2[PublishDevicePath] != pc[PublishDevicePath] {
				t.Fatalf("a retried attach gave %v, first %v", pc2, pc)
			}
			if got := rec.Takeovers(); len(got) != 1 {
				t.Fatalf("a retry reported the takeover again: %+v", got)
			}
			// The dead node's late ControllerUnpublish leaves the new
			// holder alone.
			detach(t, ctrl, v.ID, inst1)
			if holder, _, _ := e.attachment(v.ID); holder != inst2 {
				t.Fatalf("the old node's detach took the volume from %s", inst2)
			}
			e.sim.HoldDetach(false)
			detach(t, taker, v.ID, inst2)
		})
	}
}

func (e *env) stop(id string) {
	e.t.Helper()
	if err := e.sim.StopInstance(id); err != nil {
		e.t.Fatal(err)
	}
	e.waitInstance(id, ec2sim.StateStopped)
}

func (e *env) setState(id, state string) {
	e.t.Helper()
	if err := e.sim.SetInstanceState(id, state); err != nil {
		e.t.Fatal(err)
	}
}

// TestTakeoverNamesTheCONode: with Mesos agent ids as node ids, the
// refusal and the event name the holder by its agent id, and the command
// in the refusal is one that works.
func TestTakeoverNamesTheCONode(t *testing.T) {
	e := newEnv(t)
	const agent1, agent2 = "agent-a-S0", "agent-b-S0"
	for inst, agent := range map[string]string{inst1: agent1, inst2: agent2} {
		n := e.backend(e.config("c1", inst), agent)
		if err := n.RegisterNode(ctx(t), agent); err != nil {
			t.Fatal(err)
		}
	}
	rec := harness.NewEvents()
	ctrl := e.backend(e.config("c1", ""), "", withEvents(rec))
	v := create(t, ctrl, "agents", 1, nil)
	attach(t, ctrl, v.ID, agent1, false)
	_, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: agent2, Mode: backends.SingleNodeWriter})
	if !errors.Is(err, backends.ErrConflict) || !strings.Contains(err.Error(), "instance "+inst1+" (node "+agent1+"), which is running") ||
		!strings.Contains(err.Error(), "--node "+agent1+" ") {
		t.Fatalf("refusal: %v", err)
	}
	// The operator's command from the message.
	if err := ctrl.ForceDetach(ctx(t), v.ID, agent1); err != nil {
		t.Fatalf("force-detach: %v", err)
	}
	if holder, _, _ := e.attachment(v.ID); holder != "" {
		t.Fatalf("still attached to %s after force-detach", holder)
	}
	if err := ctrl.ForceDetach(ctx(t), v.ID, agent1); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("second force-detach: %v, want ErrNotFound (nothing detached)", err)
	}
	attach(t, ctrl, v.ID, agent1, false)
	e.stop(inst1)
	attach(t, ctrl, v.ID, agent2, false)
	want := backends.Takeover{Backend: "ebs", VolumeID: v.ID, From: agent1, To: agent2, Proof: ProofInstanceStopped}
	if got := rec.Takeovers(); len(got) != 1 || got[0] != want {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	detach(t, ctrl, v.ID, agent2)
}

// TestDetachFromADeadInstanceDoesNotHang: ControllerUnpublish for a node
// whose instance is stopped or terminated completes even when EC2 never
// finishes the normal detach (it is forced: the instance cannot write),
// and is reported; for a running instance the stuck detach stays a
// retryable UNAVAILABLE and is never forced.
func TestDetachFromADeadInstanceDoesNotHang(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kill  func(e *env)
		proof string
	}{
		{"stopped", func(e *env) { e.stop(inst1) }, ProofInstanceStopped},
		{"terminated", func(e *env) {
			if err := e.sim.TerminateInstance(inst1); err != nil {
				e.t.Fatal(err)
			}
			e.waitInstance(inst1, ec2sim.StateTerminated)
		}, ProofInstanceTerminated},
		{"running", func(e *env) {}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rec := harness.NewEvents()
			cfg := e.config("c1", "")
			cfg.AttachTimeout = "1500ms"
			ctrl := e.backend(cfg, "", withEvents(rec))
			v := create(t, ctrl, "unpub", 1, nil)
			attach(t, ctrl, v.ID, inst1, false)
			e.sim.HoldDetach(true)
			tc.kill(e)
			err := ctrl.Detach(within(t, 20*time.Second), v.ID, inst1)
			holder, _, state := e.attachment(v.ID)
			if tc.proof == "" {
				if !errors.Is(err, backends.ErrUnavailable) || holder != inst1 || state != "detaching" {
					t.Fatalf("stuck detach from a running instance: %v, attachment %q %s; want ErrUnavailable and still detaching", err, holder, state)
				}
				if got := rec.Takeovers(); len(got) != 0 {
					t.Fatalf("events %+v", got)
				}
				e.sim.HoldDetach(false)
				detach(t, ctrl, v.ID, inst1)
				return
			}
			if err != nil || holder != "" {
				t.Fatalf("detach from a %s instance: %v, attachment %q %s", e.sim.InstanceState(inst1), err, holder, state)
			}
			want := backends.Takeover{Backend: "ebs", VolumeID: v.ID, From: inst1, Proof: tc.proof}
			if got := rec.Takeovers(); len(got) != 1 || got[0] != want {
				t.Fatalf("events %+v, want %+v", got, want)
			}
		})
	}
}

// TestSimInstanceLifecycle checks the test server's instance states
// against what EC2 does, through the real SDK: a stopped instance keeps
// its volumes attached; a terminated one's volumes become available, but
// the root volume (DeleteOnTermination) is deleted; nothing attaches to a
// terminated instance.
func TestSimInstanceLifecycle(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "life", 1, nil)
	attach(t, ctrl, v.ID, inst2, false)
	var root string
	for _, vi := range e.sim.Volumes() {
		if vi.InstanceID == inst2 && vi.Device == "/dev/xvdba" {
			root = vi.ID
		}
	}
	if root == "" {
		t.Fatal("no root volume on inst2")
	}
	e.stop(inst2)
	if st, err := ctrl.instanceState(ctx(t), inst2); err != nil || st != "stopped" {
		t.Fatalf("DescribeInstances: %q %v", st, err)
	}
	time.Sleep(100 * time.Millisecond) // several state delays
	if holder, _, state := e.attachment(v.ID); holder != inst2 || state != "attached" {
		t.Fatalf("a stopped instance's volume is %q %s, want still attached", holder, state)
	}
	if err := e.sim.StartInstance(inst2); err != nil {
		t.Fatal(err)
	}
	e.waitInstance(inst2, ec2sim.StateRunning)
	if err := e.sim.TerminateInstance(inst2); err != nil {
		t.Fatal(err)
	}
	if st, _ := ctrl.instanceState(ctx(t), inst2); st != "shutting-down" {
		t.Fatalf("state right after terminate: %q", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		holder, _, _ := e.attachment(v.ID)
		rootLeft := false
		for _, vi := range e.sim.Volumes() {
			rootLeft = rootLeft || vi.ID == root
		}
		if holder == "" && !rootLeft {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after termination: volume on %q, root volume still there: %t", holder, rootLeft)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := ctrl.Get(ctx(t), v.ID)
	if err != nil || len(got.Attachments) != 0 {
		t.Fatalf("the data volume after termination: %+v %v", got, err)
	}
	_, err = ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter})
	if err == nil || !strings.Contains(fmt.Sprint(err), "IncorrectInstanceState") {
		t.Fatalf("attach to a terminated instance: %v", err)
	}
}

// TestTakeoverRacesARestart: the holder is stopped when the takeover
// checks, and started again while its (normal) detach is under way. The
// detach is then never forced, the attach answers UNAVAILABLE naming the
// new state, nothing is reported, and the volume is attached to the new
// instance only after the old one has let it go.
func TestTakeoverRacesARestart(t *testing.T) {
	e := newEnv(t)
	rec := harness.NewEvents()
	cfg := e.config("c1", "")
	cfg.AttachTimeout = "1500ms"
	ctrl := e.backend(cfg, "", withEvents(rec))
	v := create(t, ctrl, "race", 1, nil)
	attach(t, ctrl, v.ID, inst1, false)
	e.stop(inst1)
	e.sim.HoldDetach(true) // the guest of the restarted instance holds on to the device
	started := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, _, state := e.attachment(v.ID); state == "detaching" {
				started <- e.sim.StartInstance(inst1)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		started <- errors.New("the takeover never asked for a detach")
	}()
	_, err := ctrl.Attach(within(t, 20*time.Second), v.ID, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter})
	if serr := <-started; serr != nil {
		t.Fatal(serr)
	}
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), "again") {
		t.Fatalf("attach after the holder was started again: %v, want ErrUnavailable saying it runs again", err)
	}
	if holder, _, state := e.attachment(v.ID); holder != inst1 || state != "detaching" {
		t.Fatalf("volume %q %s: the detach from the restarted instance was forced", holder, state)
	}
	if got := rec.Takeovers(); len(got) != 0 {
		t.Fatalf("events %+v", got)
	}
	// While it runs, retries are refused as "still detaching"; once its
	// guest lets go, the volume moves without any proof being needed.
	e.waitInstance(inst1, ec2sim.StateRunning)
	if _, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("retry while the restarted holder still detaches: %v", err)
	}
	e.sim.HoldDetach(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("attach after the old holder let go: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rec.Takeovers(); len(got) != 0 {
		t.Fatalf("a plain move was reported as a takeover: %+v", got)
	}
	detach(t, ctrl, v.ID, inst2)
}

// TestTakeoverWithinTheDeadline: a takeover whose detach outlasts the
// request's deadline answers UNAVAILABLE before the deadline (so the CO
// tries again rather than timing out), reports nothing, and the next
// attempt finishes it and reports it once.
func TestTakeoverWithinTheDeadline(t *testing.T) {
	e := newEnv(t)
	rec := harness.NewEvents()
	cfg := e.config("c1", "")
	cfg.AttachTimeout = "6s" // a stuck detach from a stopped instance is forced after 2s
	ctrl := e.backend(cfg, "", withEvents(rec))
	v := create(t, ctrl, "deadline", 1, nil)
	attach(t, ctrl, v.ID, inst1, false)
	e.stop(inst1)
	e.sim.HoldDetach(true)
	req := backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter}
	begin := time.Now()
	_, err := ctrl.Attach(within(t, time.Second), v.ID, req)
	if !errors.Is(err, backends.ErrUnavailable) || time.Since(begin) >= time.Second {
		t.Fatalf("takeover cut short by a 1s deadline: %v after %s, want ErrUnavailable before the deadline", err, time.Since(begin))
	}
	if holder, _, state := e.attachment(v.ID); holder != inst1 || state != "detaching" {
		t.Fatalf("after the first attempt the volume is %q %s", holder, state)
	}
	if got := rec.Takeovers(); len(got) != 0 {
		t.Fatalf("an unfinished takeover was reported: %+v", got)
	}
	if _, err := ctrl.Attach(within(t, 20*time.Second), v.ID, req); err != nil {
		t.Fatalf("the next attempt: %v", err)
	}
	if holder, _, _ := e.attachment(v.ID); holder != inst2 {
		t.Fatalf("volume on %q after the takeover", holder)
	}
	if got := rec.Takeovers(); len(got) != 1 || got[0].Proof != ProofInstanceStopped {
		t.Fatalf("events %+v, want one instance-stopped takeover", got)
	}
	e.sim.HoldDetach(false)
	detach(t, ctrl, v.ID, inst2)
}
