package ebs

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Describes of single volumes are batched across concurrent requests. A
// controller serving many ControllerPublish, ControllerUnpublish and
// CreateVolume calls at once polls one volume per call while it waits for
// an attachment, a detachment or a new volume; each poll used to be a
// DescribeVolumes call of its own, and EC2 meters DescribeVolumes per
// account and region (a bucket refilled at about 20 calls a second by
// default), so a burst of publishes throttled every other describe of the
// account. The batcher sends whatever single-volume describes are waiting
// as one call, and while that call is in flight collects the next batch.
//
// The batch is a "volume-id" filter, not a VolumeIds list: EC2 answers a
// VolumeIds list naming one volume it does not know (deleted, or just
// created and not yet described: its eventual consistency) with
// InvalidVolume.NotFound for the whole call, so one caller's fresh volume
// would fail every other caller's describe. A filter leaves the unknown id
// out of the answer, and that caller alone gets NotFound, which the waits
// already read as "not yet" where EC2 documents the window.
//
// Batches hold at most describeBatchMax ids. EC2 refuses a call with more
// than 200 filter values in all (InvalidParameterValue); 100 stays well
// below that and keeps one answer small (a volume with its tags is about
// 2 KB of XML), so one slow or throttled batch delays few callers.
const describeBatchMax = 100

// describeWindow is how long the first describe of an idle batcher waits
// for others to join it. Concurrent RPCs reach their first describe within
// microseconds of each other; a few milliseconds is nothing next to an EC2
// round trip (tens of milliseconds) and the poll interval.
const describeWindow = 3 * time.Millisecond

// describeBatchCap bounds a batch call whose callers all have no deadline.
const describeBatchCap = 2 * time.Minute

type describeResult struct {
	vol *types.Volume // nil: EC2 did not list the id
	err error
}

type describeReq struct {
	ctx  context.Context
	id   string
	done chan describeResult // buffered: the batcher never blocks on a caller who left
}

// describeBatcher coalesces single-volume describes. One goroutine at a
// time (the flusher) drains the queue, one batch call after another, and
// exits when the queue is empty; the next describe starts another.
type describeBatcher struct {
	// call describes ids with one DescribeVolumes call (its pages).
	call   func(ctx context.Context, ids []string) (map[string]*types.Volume, error)
	max    int
	window time.Duration

	mu      sync.Mutex
	queue   []*describeReq
	running bool
}

func newDescribeBatcher(call func(context.Context, []string) (map[string]*types.Volume, error)) *describeBatcher {
	return &describeBatcher{call: call, max: describeBatchMax, window: describeWindow}
}

// describe returns volume id as a batch call described it: nil and no
// error when EC2 did not list it. It returns as soon as ctx ends, whatever
// the batch it is in does.
func (d *describeBatcher) describe(ctx context.Context, id string) (*types.Volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &describeReq{ctx: ctx, id: id, done: make(chan describeResult, 1)}
	d.mu.Lock()
	d.queue = append(d.queue, r)
	if !d.running {
		d.running = true
		go d.flush()
	}
	d.mu.Unlock()
	select {
	case res := <-r.done:
		return res.vol, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flush sends batches until the queue is empty.
func (d *describeBatcher) flush() {
	if d.window > 0 {
		time.Sleep(d.window)
	}
	for {
		d.mu.Lock()
		var batch []*describeReq
		rest := d.queue[:0]
		for _, r := range d.queue {
			switch {
			case r.ctx.Err() != nil:
				// Its caller has gone; nothing waits for the answer.
			case len(batch) < d.max:
				batch = append(batch, r)
			default:
				rest = append(rest, r)
			}
		}
		clear(d.queue[len(rest):])
		d.queue = rest
		if len(batch) == 0 {
			d.running = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		d.send(batch)
	}
}

// send makes one call for batch and answers each caller.
func (d *describeBatcher) send(batch []*describeReq) {
	ctx, cancel := batchContext(batch)
	defer cancel()
	ids := make([]string, 0, len(batch))
	seen := map[string]bool{}
	for _, r := range batch {
		if !seen[r.id] {
			seen[r.id] = true
			ids = append(ids, r.id)
		}
	}
	vols, err := d.call(ctx, ids)
	for _, r := range batch {
		if err != nil {
			r.done <- describeResult{err: err}
			continue
		}
		// Each caller gets a copy of its own: callers keep and read what
		// they get, and two callers may ask for one volume.
		var v *types.Volume
		if got := vols[r.id]; got != nil {
			c := *got
			v = &c
		}
		r.done <- describeResult{vol: v}
	}
}

// batchContext is the context of one batch call: it lasts until the latest
// deadline of its callers (describeBatchCap when one has none) and is
// cancelled once every caller has gone, so a batch is never cut short by
// one caller's deadline, nor left running for nobody. It keeps the values
// of the first caller's context only (none of the SDK's depend on them).
func batchContext(batch []*describeReq) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, r := range batch {
		dl, ok := r.ctx.Deadline()
		if !ok {
			latest = time.Now().Add(describeBatchCap)
			break
		}
		if dl.After(latest) {
			latest = dl
		}
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(batch[0].ctx), latest)
	var mu sync.Mutex
	left := len(batch)
	stops := make([]func() bool, 0, len(batch))
	for _, r := range batch {
		stops = append(stops, context.AfterFunc(r.ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if left--; left == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// describeByFilter is the batch call: DescribeVolumes with a volume-id
// filter, every page of it.
func (b *Backend) describeByFilter(ctx context.Context, ids []string) (map[string]*types.Volume, error) {
	in := &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("volume-id"), Values: ids}}}
	out := make(map[string]*types.Volume, len(ids))
	p := ec2.NewDescribeVolumesPaginator(b.ec2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for i := range page.Volumes {
			v := &page.Volumes[i]
			out[aws.ToString(v.VolumeId)] = v
		}
	}
	return out, nil
}
