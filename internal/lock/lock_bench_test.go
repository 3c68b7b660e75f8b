package lock

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkKeyedUncontended: one goroutine takes and releases one key, the
// cost every serialized RPC pays when nothing else touches its volume.
func BenchmarkKeyedUncontended(b *testing.B) {
	var k Keyed
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		unlock, err := k.Lock(ctx, "volume:local/0123456789abcdef0123456789abcdef")
		if err != nil {
			b.Fatal(err)
		}
		unlock()
	}
}

// BenchmarkKeyedDistinctKeysParallel: every goroutine has a key of its own,
// as concurrent calls on different volumes do; they share only the map's
// mutex.
func BenchmarkKeyedDistinctKeysParallel(b *testing.B) {
	var k Keyed
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := "volume:local/" + strconv.FormatInt(seq.Add(1), 10)
		for pb.Next() {
			unlock, err := k.Lock(ctx, key)
			if err != nil {
				b.Error(err)
				return
			}
			unlock()
		}
	})
}

// BenchmarkKeyedContended: every goroutine wants the same key, so each
// Lock waits for the holder (a handoff through the entry's channel).
func BenchmarkKeyedContended(b *testing.B) {
	var k Keyed
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			unlock, err := k.Lock(ctx, "volume:local/same")
			if err != nil {
				b.Error(err)
				return
			}
			unlock()
		}
	})
}

// BenchmarkRun: lock.Run as the Locked services call it.
func BenchmarkRun(b *testing.B) {
	var k Keyed
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Run(ctx, &k, "volume:local/x", func() (int, error) { return 1, nil }); err != nil {
			b.Fatal(err)
		}
	}
}
