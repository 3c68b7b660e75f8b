// Package hostile holds tests that attack the plugin through its real gRPC
// socket with inputs a careless or malicious caller could send: ids, names
// and paths that try to climb out of their roots, planted symbolic links,
// oversized and malformed values, injected mount options, forged page
// tokens, and secrets that must never reach a log line, an error or a
// metric (DESIGN.md invariants 6 and 7). It also checks the permissions of
// the socket and of the pool's files.
//
// The package has no code of its own; everything is in its tests, which
// need root (loop devices, mkfs, mount), as CI runs them.
package hostile
