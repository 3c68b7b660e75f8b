//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether this build can inject faults.
const Enabled = true

// EnvPoint names the point to crash at; EnvHit which hit of it (default 1).
const (
	EnvPoint = "CSI_LIBSTORAGE_CRASH_AT"
	EnvHit   = "CSI_LIBSTORAGE_CRASH_HIT"
)

var (
	target = os.Getenv(EnvPoint)
	want   = func() int64 {
		n, err := strconv.ParseInt(os.Getenv(EnvHit), 10, 64)
		if err != nil || n < 1 {
			return 1
		}
		return n
	}()
	hits atomic.Int64
)

// Point kills the process with SIGKILL, as a power cut or the OOM killer
// would, when name is the configured point and this is the wanted hit.
func Point(name string) {
	if name != target || hits.Add(1) != want {
		return
	}
	fmt.Fprintf(os.Stderr, "fault: crash at %s\n", name)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
