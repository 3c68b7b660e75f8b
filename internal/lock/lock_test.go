package lock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSameKeyIsExclusive(t *testing.T) {
	var k Keyed
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := k.Lock(context.Background(), "vol")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if got := maxInside.Load(); got != 1 {
		t.Fatalf("%d holders at once, want 1", got)
	}
	if k.Len() != 0 {
		t.Fatalf("%d keys left behind", k.Len())
	}
}

func TestDifferentKeysDoNotWait(t *testing.T) {
	var k Keyed
	unlock, err := k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u2, err := k.Lock(ctx, "b")
	if err != nil {
		t.Fatalf("lock b while a is held: %v", err)
	}
	u2()
}

func TestWaitHonoursDeadline(t *testing.T) {
	var k Keyed
	unlock, _ := k.Lock(context.Background(), "a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.Lock(ctx, "a")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("waited %v past a 20ms deadline", waited)
	}
	unlock()
	if k.Len() != 0 {
		t.Fatalf("%d keys left behind after a timed-out waiter", k.Len())
	}
	// The key is usable again.
	u, err := k.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	u()
}
