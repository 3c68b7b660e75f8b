//go:build !faultinject

// Package fault marks the step boundaries of every lifecycle operation where
// a crash must be survivable. In a normal build Point does nothing and
// compiles away; a test build with -tags faultinject kills the process at a
// chosen point, so the fault matrix can prove that a retry after a crash at
// any step completes without losing or leaking anything.
package fault

// Point marks a step boundary.
func Point(name string) {}

// Enabled reports whether this build can inject faults.
const Enabled = false
