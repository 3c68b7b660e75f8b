package ebs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// getAll gets ids concurrently, all released at once, and returns each
// caller's answer.
func getAll(c context.Context, b *Backend, ids []string) ([]*backends.Volume, []error) {
	vols, errs := make([]*backends.Volume, len(ids)), make([]error, len(ids))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			vols[i], errs[i] = b.Get(c, id)
		}()
	}
	close(start)
	wg.Wait()
	return vols, errs
}

func TestConcurrentDescribesAreBatched(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	const n = 40
	// The creates run concurrently too: their waits for "available" share
	// describes.
	ids := make([]string, n)
	var wg sync.WaitGroup
	var failed atomic.Int32
	e.sim.ResetCalls()
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := b.Create(ctx(t), backends.CreateRequest{Name: fmt.Sprintf("batch-%d", i), RequiredBytes: 1 << 30})
			if err != nil {
				t.Errorf("create %d: %v", i, err)
				failed.Add(1)
				return
			}
			ids[i] = v.ID
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	t.Logf("%d concurrent creates: %v", n, e.sim.CallCounts())

	// A volume EC2 does not know, and one it does not describe yet (just
	// created): NotFound for their callers alone. A VolumeIds list holding
	// either would fail the whole call with InvalidVolume.NotFound.
	e.sim.SetLag("CreateVolume", time.Minute)
	fresh, err := b.ec2.CreateVolume(ctx(t), &ec2.CreateVolumeInput{AvailabilityZone: aws.String(zoneA), Size: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	const unknown = "vol-00000000000000bad"
	ask := append([]string{unknown, aws.ToString(fresh.VolumeId)}, ids...)

	e.sim.ResetCalls()
	vols, errs := getAll(ctx(t), b, ask)
	calls := e.sim.Calls("DescribeVolumes")
	for i, id := range ask {
		switch {
		case i < 2:
			if !errors.Is(errs[i], backends.ErrNotFound) {
				t.Errorf("get %s: %v, want ErrNotFound", id, errs[i])
			}
		case errs[i] != nil:
			t.Errorf("get %s: %v", id, errs[i])
		case vols[i].ID != id || vols[i].Name != fmt.Sprintf("batch-%d", i-2):
			t.Errorf("get %s answered %s (%s)", id, vols[i].ID, vols[i].Name)
		}
	}
	if calls >= len(ask)/2 {
		t.Fatalf("%d concurrent describes made %d DescribeVolumes calls, want fewer than %d", len(ask), calls, len(ask)/2)
	}
	t.Logf("%d concurrent describes: %d DescribeVolumes calls", len(ask), calls)
}

// TestBatchingOutlastsThrottling: EC2's DescribeVolumes bucket (here 5
// calls, refilled at 5 a second) cannot serve 40 concurrent describes of
// one call each within 2 s, whatever the client retries; batched, they
// take a few calls.
func TestBatchingOutlastsThrottling(t *testing.T) {
	e := newEnv(t)
	seed := e.backend(e.config("c1", ""), "")
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = create(t, seed, fmt.Sprintf("thr-%d", i), 1, nil).ID
	}

	// Batched, through a backend of its own (its adaptive retryer has
	// seen no throttling yet).
	e.sim.Throttle("DescribeVolumes", 5, 5)
	b := e.backend(e.config("c1", ""), "")
	start := time.Now()
	_, errs := getAll(within(t, 2*time.Second), b, ids)
	batched := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("batched get %s under throttling: %v", ids[i], err)
		}
	}

	// One call per describe, as before batching, through another fresh
	// backend and a full bucket.
	e.sim.Throttle("DescribeVolumes", 5, 5)
	u := e.backend(e.config("c1", ""), "")
	c := within(t, 2*time.Second)
	var wg sync.WaitGroup
	var fails atomic.Int32
	start = time.Now()
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := u.ec2.DescribeVolumes(c, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}); err != nil {
				fails.Add(1)
			}
		}()
	}
	wg.Wait()
	unbatched := time.Since(start)
	t.Logf("40 describes under a 5/s bucket: batched %v, all answered; unbatched %v, %d failed", batched, unbatched, fails.Load())
	if fails.Load() == 0 {
		t.Fatalf("unbatched describes all passed a bucket of 5 refilled at 5/s within 2 s: the throttling test shows nothing")
	}
}

// TestBatcherHonoursEachDeadline: a caller whose deadline passes while its
// batch call hangs gets its own deadline error at once; the others in the
// batch get the answer when it comes; a batch never exceeds the size cap.
func TestBatcherHonoursEachDeadline(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	d := newDescribeBatcher(func(ctx context.Context, ids []string) (map[string]*types.Volume, error) {
		mu.Lock()
		sizes = append(sizes, len(ids))
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		out := map[string]*types.Volume{}
		for _, id := range ids {
			if id != "vol-missing" {
				out[id] = &types.Volume{VolumeId: aws.String(id)}
			}
		}
		return out, nil
	})
	d.max = 3

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	long, cancelLong := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelLong()
	type answer struct {
		id  string
		v   *types.Volume
		err error
	}
	answers := make(chan answer, 8)
	ask := func(c context.Context, id string) {
		v, err := d.describe(c, id)
		answers <- answer{id, v, err}
	}
	go ask(short, "vol-short")
	for _, id := range []string{"vol-a", "vol-b", "vol-missing", "vol-c", "vol-a"} {
		go ask(long, id)
	}
	first := <-answers
	if first.id != "vol-short" || !errors.Is(first.err, context.DeadlineExceeded) {
		t.Fatalf("first answer %+v, want vol-short's deadline", first)
	}
	close(release)
	for range 5 {
		a := <-answers
		switch {
		case a.err != nil:
			t.Errorf("%s: %v", a.id, a.err)
		case a.id == "vol-missing" && a.v != nil:
			t.Errorf("vol-missing answered %v", a.v)
		case a.id != "vol-missing" && (a.v == nil || aws.ToString(a.v.VolumeId) != a.id):
			t.Errorf("%s answered %v", a.id, a.v)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range sizes {
		if n > 3 {
			t.Fatalf("batch sizes %v exceed the cap of 3", sizes)
		}
	}
	if _, err := d.describe(short, "vol-a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("describe with an expired context: %v", err)
	}
	// The flusher goroutine ends once the queue is empty.
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		d.mu.Lock()
		running := d.running
		d.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the flusher still runs with nothing queued")
		}
	}
}
