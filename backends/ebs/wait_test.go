package ebs

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// TestWaitAnswersUnavailableWhenACallOutlivesTheDeadline: a describe that
// began before wait's early deadline but was still running when the
// caller's deadline came (EC2 slow or throttling) is "not yet", as when the
// loop itself runs out of time, never a bare deadline error.
func TestWaitAnswersUnavailableWhenACallOutlivesTheDeadline(t *testing.T) {
	b := &Backend{poll: time.Millisecond, log: zap.NewNop()}
	for _, tc := range []struct {
		name string
		fn   func(ctx context.Context) (bool, error)
	}{
		{"call outlives the deadline", func(ctx context.Context) (bool, error) {
			<-ctx.Done()
			return false, fmt.Errorf("describe volume vol-1: %w", ctx.Err())
		}},
		{"never done", func(context.Context) (bool, error) { return false, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := b.wait(ctx, time.Minute, "volume vol-1 to attach", func() (bool, error) { return tc.fn(ctx) })
			if !errors.Is(err, backends.ErrUnavailable) {
				t.Fatalf("wait = %v, want ErrUnavailable", err)
			}
		})
	}
	// A cancelled caller is not told to retry.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.wait(ctx, time.Minute, "volume vol-1 to attach", func() (bool, error) { return false, fmt.Errorf("describe: %w", ctx.Err()) })
	if errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("wait of a cancelled call = %v, want no UNAVAILABLE", err)
	}
}
