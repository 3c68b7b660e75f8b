//go:build !faultinject

package main

import "github.com/csi-libstorage/csi-libstorage/internal/plugin"

// testFactories is nil in the shipped plugin: nothing can replace how a
// backend is built or how it proves a device's identity.
func testFactories() map[string]plugin.Factory { return nil }
