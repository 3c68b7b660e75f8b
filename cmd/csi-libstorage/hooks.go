//go:build !faultinject

package main

import "github.com/csi-libstorage/csi-libstorage/internal/wiring"

// testFactories is nil in the shipped plugin: nothing can replace how a
// backend is built or how it proves a device's identity.
func testFactories() map[string]wiring.Factory { return nil }
