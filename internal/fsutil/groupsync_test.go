package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Every caller's entry is in the directory when an fsync that covers it
// begins, and callers that arrive during an fsync share the next one.
func TestDirSyncerCoversEachCallerAndShares(t *testing.T) {
	dir := t.TempDir()
	s := NewDirSyncer(dir)
	const n = 10
	var (
		mu      sync.Mutex
		covered = map[string]bool{} // entries present when some fsync began
		joined  atomic.Int32
		gate    = make(chan struct{})
		first   = true
	)
	s.sync = func(p string) error {
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		mu.Lock()
		for _, e := range entries {
			covered[e.Name()] = true
		}
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-gate // hold the first fsync while the others arrive
		}
		return SyncDir(p)
	}
	leaderIn := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := os.WriteFile(filepath.Join(dir, "leader"), nil, 0o600); err != nil {
			t.Error(err)
		}
		close(leaderIn)
		if err := s.Sync(); err != nil {
			t.Error(err)
		}
	}()
	<-leaderIn
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := filepath.Join(dir, "f"+string(rune('a'+i)))
			if err := os.WriteFile(name, nil, 0o600); err != nil {
				t.Error(err)
			}
			joined.Add(1)
			if err := s.Sync(); err != nil {
				t.Error(err)
			}
			mu.Lock()
			ok := covered[filepath.Base(name)]
			mu.Unlock()
			if !ok {
				t.Errorf("Sync returned to the writer of %s before an fsync that began after the write", filepath.Base(name))
			}
		}()
	}
	for joined.Load() < n {
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	// One fsync per caller would be 11; the ten that came during the
	// first share the second (a straggler may need a third).
	if r := s.Rounds(); r > 3 {
		t.Errorf("%d fsyncs for 11 callers of whom 10 arrived during the first; want them shared", r)
	}
}

// A failed fsync is reported to the callers it covered, and not hidden by
// a later one that succeeds.
func TestDirSyncerReportsFailureToItsRound(t *testing.T) {
	s := NewDirSyncer(t.TempDir())
	boom := errors.New("EIO")
	fail := true
	s.sync = func(string) error {
		if fail {
			fail = false
			return boom
		}
		return nil
	}
	if err := s.Sync(); !errors.Is(err, boom) {
		t.Fatalf("first Sync: %v, want the fsync error", err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	if r := s.Rounds(); r != 2 {
		t.Fatalf("%d rounds, want 2", r)
	}
}
