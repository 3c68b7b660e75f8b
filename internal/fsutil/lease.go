package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Leases keeps one lease file per node in a directory of a filesystem the
// nodes share. A node renews its lease by setting its file's modification
// time to "now" as the filesystem sees it (utimensat with UTIME_NOW; over
// NFS the server picks the time), and another node judges a lease by
// comparing that time with a reference file it has just touched the same
// way. Both times come from one clock, the filesystem's, so no node's
// clock, however far off, can make a lease look older than it is.
//
//	<dir>/<node>.lease   the node's lease, touched on every renewal
//	<dir>/<node>.ref     the node's reference, touched when it judges
type Leases struct {
	dir string
}

// NewLeases returns the leases kept in dir, which must exist.
func NewLeases(dir string) *Leases { return &Leases{dir: dir} }

// Dir returns the lease directory.
func (l *Leases) Dir() string { return l.dir }

// Path returns node's lease file.
func (l *Leases) Path(node string) string { return filepath.Join(l.dir, node+".lease") }

func (l *Leases) refPath(node string) string { return filepath.Join(l.dir, node+".ref") }

// Start writes node's lease file anew, declaring its period (the judge
// goes by the holder's period, since the holder fences itself by it), and
// renews it.
func (l *Leases) Start(node string, period time.Duration) error {
	if err := WriteFileAtomic(l.Path(node), []byte(period.String()+"\n"), 0o600); err != nil {
		return err
	}
	return l.Renew(node)
}

// Renew renews node's lease. It never creates the file: a renewal that
// was under way when the lease was released must not bring it back.
func (l *Leases) Renew(node string) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, l.Path(node), nil, 0)
}

// Release removes node's lease file: the node will hold no lease until it
// renews again, so nothing it holds can be taken over automatically.
func (l *Leases) Release(node string) error {
	err := os.Remove(l.Path(node))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// LeaseReading is one judgement of a node's lease, in filesystem time.
type LeaseReading struct {
	// Found is false when the node has no lease file: it never renewed
	// one (an older plugin, or leases turned off), so its lease proves
	// nothing either way.
	Found bool
	// Renewed is the filesystem time of the node's last renewal; Now the
	// filesystem time of the judge's reference, taken just before.
	Renewed, Now time.Time
	// Period is the lease period the holder declared in its file; zero
	// when it declared none.
	Period time.Duration
}

// Age is how long before the judgement the node last renewed. It is
// negative when the node renewed after the judge touched its reference.
func (r LeaseReading) Age() time.Duration { return r.Now.Sub(r.Renewed) }

// Expired reports whether the lease of the given period has run out.
func (r LeaseReading) Expired(period time.Duration) bool {
	return r.Found && period > 0 && r.Age() > period
}

// Takeable reports whether the lease expired more than one period ago:
// the holder should have fenced itself two thirds of a period after its
// last renewal, and has had more than four thirds of one to do it.
func (r LeaseReading) Takeable(period time.Duration) bool {
	return r.Found && period > 0 && r.Age() > 2*period
}

// ExpiresAt is when the lease runs out, and TakeableAt when it may be
// taken, both by the filesystem's clock.
func (r LeaseReading) ExpiresAt(period time.Duration) time.Time { return r.Renewed.Add(period) }

// TakeableAt: see ExpiresAt.
func (r LeaseReading) TakeableAt(period time.Duration) time.Time {
	return r.Renewed.Add(2 * period)
}

// Read judges holder's lease on behalf of judge: it touches the judge's
// reference file, then reads both files' times afresh. The reference is
// touched first, so a renewal that races the judgement can only make the
// lease look younger, never older.
func (l *Leases) Read(judge, holder string) (LeaseReading, error) {
	ref := l.refPath(judge)
	if err := touchNow(ref); err != nil {
		return LeaseReading{}, fmt.Errorf("lease reference %s: %w", ref, err)
	}
	now, err := freshMtime(ref)
	if err != nil {
		return LeaseReading{}, fmt.Errorf("lease reference %s: %w", ref, err)
	}
	f, err := os.Open(l.Path(holder))
	if errors.Is(err, fs.ErrNotExist) {
		return LeaseReading{Now: now}, nil
	}
	if err != nil {
		return LeaseReading{}, fmt.Errorf("lease of node %s: %w", holder, err)
	}
	defer f.Close()
	renewed, err := mtimeOf(f)
	if err != nil {
		return LeaseReading{}, fmt.Errorf("lease of node %s: %w", holder, err)
	}
	r := LeaseReading{Found: true, Renewed: renewed, Now: now}
	var buf [64]byte
	n, _ := f.Read(buf[:])
	if d, err := time.ParseDuration(strings.TrimSpace(string(buf[:n]))); err == nil && d > 0 {
		r.Period = d
	}
	return r, nil
}

// touchNow sets path's times to the filesystem's now, creating the file
// if it does not exist.
func touchNow(path string) error {
	err := unix.UtimesNanoAt(unix.AT_FDCWD, path, nil, 0)
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, nil, 0)
}

// freshMtime reads a file's modification time through a new open file:
// an NFS client revalidates a file's attributes on open (close-to-open
// consistency), where a plain stat may be answered from its attribute
// cache, seconds old.
func freshMtime(path string) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	return mtimeOf(f)
}

func mtimeOf(f *os.File) (time.Time, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return time.Time{}, err
	}
	return time.Unix(st.Mtim.Unix()), nil
}

// fsIocShutdown is FS_IOC_SHUTDOWN (_IOR('X', 125, __u32)), which ext4
// and XFS (as XFS_IOC_GOINGDOWN) implement; x/sys/unix does not name it.
const fsIocShutdown = 0x8004587d

// shutdownNoLogFlush is FS_SHUTDOWN_FLAGS_NOLOGFLUSH: stop at once and
// write nothing more, not even the journal.
const shutdownNoLogFlush = 2

// Shutdown stops the filesystem mounted at dir: from then on every access
// to it fails with EIO, in every mount of it, and nothing more is written
// to its device, not even the journal (the next mount replays it). Only
// unmounting ends the state.
func Shutdown(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetPointerInt(int(f.Fd()), fsIocShutdown, shutdownNoLogFlush); err != nil {
		return fmt.Errorf("shut down the filesystem at %s: %w", dir, err)
	}
	return nil
}
