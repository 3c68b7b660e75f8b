// Package lock serializes work per key (a volume id, a volume name) inside
// one process. Waiting honours the caller's context, so a request never
// waits past its deadline, and different keys never wait for each other.
package lock

import (
	"context"
	"sync"
)

// Keyed is a set of mutexes created on demand, one per key. The zero value
// is ready to use.
type Keyed struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds one token while the key is locked
	refs int           // holders and waiters; the entry is dropped at zero
}

// Lock takes the lock for key, waiting until it is free or ctx is done. On
// success it returns the function that releases the lock.
func (k *Keyed) Lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*entry)
	}
	e := k.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
		return func() {
			<-e.ch
			k.release(key, e)
		}, nil
	case <-ctx.Done():
		k.release(key, e)
		return nil, ctx.Err()
	}
}

func (k *Keyed) release(key string, e *entry) {
	k.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}

// Len returns the number of keys held or waited for; tests use it to prove
// that nothing is left behind.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

// Refs returns how many callers hold or wait for key; tests use it to see
// that a waiter whose deadline passed has given up.
func (k *Keyed) Refs(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.m[key]; e != nil {
		return e.refs
	}
	return 0
}
