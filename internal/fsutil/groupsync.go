package fsutil

import "sync"

// DirSyncer makes the entries of one directory durable for many callers
// at once (group commit). A caller changes the directory (creates, renames
// or removes an entry) and then calls Sync; Sync returns once an fsync of
// the directory that began after the call has completed, so every caller
// still waits for its own change to be durable. Callers that arrive while
// an fsync is running share the next one instead of each issuing their own.
type DirSyncer struct {
	path string
	// sync is SyncDir; tests replace it to count calls or fail them.
	sync func(string) error

	mu sync.Mutex
	// running is the fsync in progress; next collects the callers that
	// arrived after it began, who need one more.
	running, next *dirRound
	rounds        uint64
}

type dirRound struct {
	done chan struct{}
	err  error // set before done is closed
}

// NewDirSyncer returns the group committer of the directory at path.
func NewDirSyncer(path string) *DirSyncer {
	return &DirSyncer{path: path, sync: SyncDir}
}

// Path returns the directory.
func (s *DirSyncer) Path() string { return s.path }

// Rounds returns how many fsyncs of the directory have been issued.
func (s *DirSyncer) Rounds() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rounds
}

// Sync returns once every change the caller made to the directory before
// calling it is durable, or with the error of the fsync that was to make it
// so. Each round's result goes to exactly the callers it covered: a later
// fsync that succeeds after a failed one does not prove the earlier
// changes reached the disk.
func (s *DirSyncer) Sync() error {
	s.mu.Lock()
	if s.next == nil {
		s.next = &dirRound{done: make(chan struct{})}
	}
	r := s.next
	for s.next == r {
		if s.running == nil {
			// Lead the round: every caller in it made its change before
			// joining, hence before this fsync begins.
			s.next, s.running = nil, r
			s.rounds++
			s.mu.Unlock()
			r.err = s.sync(s.path)
			s.mu.Lock()
			s.running = nil
			s.mu.Unlock()
			close(r.done)
			return r.err
		}
		busy := s.running.done
		s.mu.Unlock()
		<-busy
		s.mu.Lock()
	}
	s.mu.Unlock()
	<-r.done
	return r.err
}
