package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKeyLocks: a held key excludes every other holder of the same key,
// whether it uses the same KeyLocks or another one on the file; a waiter
// gives up at its deadline and takes the lock once it is released; other
// keys never wait.
func TestKeyLocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pool.lock")
	held, err := NewKeyLocks(p).Lock(context.Background(), "vol-a")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		key      string
		wantBusy bool
	}{
		{"same key", "vol-a", true},
		{"other key", "vol-b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			fds := openFDs(t)
			l, err := NewKeyLocks(p).Lock(ctx, tt.key)
			if tt.wantBusy {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("lock of a held key: %v, want deadline exceeded", err)
				}
				if n := openFDs(t); n != fds {
					t.Fatalf("%d file descriptors open after a lock gave up, %d before", n, fds)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock of a free key while another is held: %v", err)
			}
			l.Close()
		})
	}

	// A waiter that has seen the key busy gets it once it is released.
	busy := make(chan struct{})
	waiter := NewKeyLocks(p)
	waiter.hook = func(step string) {
		if step == "busy" && busy != nil {
			close(busy)
			busy = nil
		}
	}
	seen := busy
	got := make(chan error, 1)
	go func() {
		l, err := waiter.Lock(context.Background(), "vol-a")
		if err == nil {
			l.Close()
		}
		got <- err
	}()
	<-seen
	held.Close()
	if err := <-got; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
}

// TestKeyLocksRecheckReplacedFile: a lock taken on a file that was removed
// or replaced after it was opened is never trusted. The hook replaces the
// file right after the first open, so the recheck runs every time.
func TestKeyLocksRecheckReplacedFile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		replace func(t *testing.T, p string)
	}{
		{"removed", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Error(err)
			}
		}},
		{"renamed over", func(t *testing.T, p string) {
			if err := os.WriteFile(p+".new", nil, 0o600); err != nil {
				t.Error(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Error(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "pool.lock")
			k := NewKeyLocks(p)
			var steps []string
			k.hook = func(step string) {
				steps = append(steps, step)
				if step == "opened" && len(steps) == 1 {
					tt.replace(t, p)
				}
			}
			l, err := k.Lock(context.Background(), "vol-a")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if want := []string{"opened", "replaced", "opened"}; !slices.Equal(steps, want) {
				t.Fatalf("steps %v, want %v: the recheck did not run", steps, want)
			}
			same, err := sameFile(l.f, p)
			if err != nil || !same {
				t.Fatalf("the held lock is not on the file at the path: %v, %v", same, err)
			}
			// The lock held is the one everybody else meets.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if _, err := NewKeyLocks(p).Lock(ctx, "vol-a"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second lock after the recheck: %v, want deadline exceeded", err)
			}
		})
	}
}

// TestKeyLockIsOFDRecord: the lock is an F_OFD record lock on the key's
// byte, as another open file description sees it with F_OFD_GETLK.
func TestKeyLockIsOFDRecord(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pool.lock")
	l, err := NewKeyLocks(p).Lock(context.Background(), "vol-a")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_RDLCK, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if lk.Type != unix.F_WRLCK || lk.Start != l.off || lk.Len != 1 || lk.Pid != -1 {
		t.Fatalf("F_OFD_GETLK sees %+v, want a write lock of byte %d owned by an open file description (pid -1)", lk, l.off)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
