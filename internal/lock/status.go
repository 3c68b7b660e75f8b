package lock

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Run calls fn while holding key. When the caller's deadline passes while
// it waits, it answers DEADLINE_EXCEEDED, never ABORTED: Mesos retries the
// former and gives up on the latter.
func Run[T any](ctx context.Context, k *Keyed, key string, fn func() (T, error)) (T, error) {
	unlock, err := k.Lock(ctx, key)
	if err != nil {
		var zero T
		code := codes.DeadlineExceeded
		if errors.Is(err, context.Canceled) {
			code = codes.Canceled
		}
		return zero, status.Errorf(code, "waited for another operation on %s until the request's deadline; retry", key)
	}
	defer unlock()
	return fn()
}
