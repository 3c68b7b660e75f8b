package libstorage

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// Inventory is what a libStorage server holds for one service, read for an
// operator (csictl migrate) rather than for serving volumes.
type Inventory struct {
	Service string
	Driver  string
	Type    string // block, nas or object
	Volumes []InventoryVolume
}

// InventoryVolume is one volume of an Inventory.
type InventoryVolume struct {
	ID               string
	Name             string
	Type             string
	SizeGiB          int64
	IOPS             int64
	AvailabilityZone string
	Encrypted        bool
	// Instances are the instance ids the volume is attached to.
	Instances []string
	Fields    map[string]string
}

// ReadInventory lists a service's volumes with their attachments. Only
// Host, Service, TLS, Token and Timeout of cfg are used.
func ReadInventory(ctx context.Context, cfg Config) (*Inventory, error) {
	timeout := DefaultTimeout
	if cfg.Timeout != "" {
		d, err := time.ParseDuration(cfg.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout %q: want a positive duration such as 60s", cfg.Timeout)
		}
		timeout = d
	}
	c, err := newClient(cfg, timeout, 250*time.Millisecond)
	if err != nil {
		return nil, err
	}
	var info driverInfo
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/services/" + cfg.Service}, &info); err != nil {
		return nil, fmt.Errorf("service %q: %w", cfg.Service, err)
	}
	b := &Backend{svc: cfg.Service, c: c}
	ws, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{Service: cfg.Service, Driver: info.Driver.Name, Type: info.Driver.Type}
	for _, w := range ws {
		v := InventoryVolume{ID: w.ID, Name: w.Name, Type: w.Type, SizeGiB: w.Size, IOPS: w.IOPS,
			AvailabilityZone: w.AvailabilityZone, Encrypted: w.Encrypted, Fields: w.Fields}
		for _, a := range w.Attachments {
			v.Instances = append(v.Instances, a.InstanceID.ID)
		}
		sort.Strings(v.Instances)
		inv.Volumes = append(inv.Volumes, v)
	}
	return inv, nil
}
