// Package xtremio is the Dell EMC XtremIO backend. The controller side talks
// to the XMS REST API (v3, falling back to v2) through a thin client of its
// own; volumes are found by name, each node is an initiator group, and
// attaching is a lun-map. The node side rescans the SCSI hosts, waits for
// /dev/disk/by-id/wwn-0x<naa> (or scsi-3<naa>), prefers the dm-multipath
// device above it, and proves by the SCSI WWID in sysfs that the device is
// the volume before the node formats or mounts it.
//
// What the plugin must remember about a volume lives in its name
// (internal/volname), renamed atomically on the XMS when it changes.
package xtremio

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/lock"
	"github.com/csi-libstorage/csi-libstorage/internal/restutil"
)

// Type is the backend type name used in configuration.
const Type = "xtremio"

// Publish context keys, as Dell's sibling drivers name them.
const (
	PublishDeviceWWN  = "DEVICE_WWN"
	PublishLUNAddress = "LUN_ADDRESS"
)

// Defaults.
const (
	DefaultByIDDir = "/dev/disk/by-id"
	DefaultSysfs   = "/sys"
	DefaultWait    = 60 * time.Second
	DefaultPoll    = 250 * time.Millisecond
	DefaultTimeout = 30 * time.Second
	MaxNameLen     = 64
	// sizeUnit: the XMS takes sizes in MB; volumes are whole MiB.
	sizeUnit = 1 << 20
)

// Config is one XtremIO backend instance as written in the configuration
// file.
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// XMS is the management server's URL (https://xms.example.com).
	XMS  string `yaml:"xms"`
	User string `yaml:"user"`
	// PasswordFile or PasswordEnv name where the password is; it never
	// appears in the configuration itself, in logs or in errors.
	PasswordFile string `yaml:"passwordFile"`
	PasswordEnv  string `yaml:"passwordEnv"`
	// Cluster names the cluster on an XMS that manages several.
	Cluster            string `yaml:"cluster"`
	CAFile             string `yaml:"caFile"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
	// InitiatorGroup is an existing group to use for this node; empty:
	// a group named like the node id, created with the node's initiators.
	InitiatorGroup string `yaml:"initiatorGroup"`
	// HostRoot is where the node reads /etc/iscsi/initiatorname.iscsi;
	// SysfsRoot where it reads FC ports, SCSI hosts and WWIDs.
	HostRoot  string `yaml:"hostRoot"`
	SysfsRoot string `yaml:"sysfsRoot"`
	ByIDDir   string `yaml:"byIDDir"`
	// AttachTimeout bounds the wait for a device; PollInterval is the delay
	// between looks; RequestTimeout bounds one XMS request.
	AttachTimeout  string `yaml:"attachTimeout"`
	PollInterval   string `yaml:"pollInterval"`
	RequestTimeout string `yaml:"requestTimeout"`
}

// Options are what configuration cannot carry.
type Options struct {
	NodeID string
	Logger *zap.Logger
	// DevDir is where device nodes named in sysfs are (/dev).
	DevDir string
}

// Backend is one XtremIO backend instance.
type Backend struct {
	name     string
	cfg      Config
	c        *client
	log      *zap.Logger
	node     string
	hostRoot string
	sysfs    string
	byID     string
	devDir   string
	wait     time.Duration
	poll     time.Duration

	locks lock.Keyed
}

// New checks the configuration and returns the backend; it does not talk
// to the XMS yet.
func New(cfg Config, o Options) (*Backend, error) {
	fail := func(format string, a ...any) (*Backend, error) {
		return nil, fmt.Errorf("xtremio backend %q: "+format, append([]any{cfg.Name}, a...)...)
	}
	if cfg.XMS == "" || cfg.User == "" {
		return fail("xms and user are required")
	}
	password, err := restutil.ReadPassword(cfg.PasswordFile, cfg.PasswordEnv)
	if err != nil {
		return fail("%v", err)
	}
	b := &Backend{name: cfg.Name, cfg: cfg, log: o.Logger, node: o.NodeID, hostRoot: cfg.HostRoot, sysfs: cfg.SysfsRoot, byID: cfg.ByIDDir, devDir: o.DevDir}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	b.log = b.log.With(zap.String("backend", cfg.Name))
	if b.hostRoot == "" {
		b.hostRoot = "/"
	}
	if b.sysfs == "" {
		b.sysfs = DefaultSysfs
	}
	if b.byID == "" {
		b.byID = DefaultByIDDir
	}
	if b.devDir == "" {
		b.devDir = "/dev"
	}
	var timeout time.Duration
	if err := restutil.ParseDurations(
		restutil.Duration{Field: "attachTimeout", Text: cfg.AttachTimeout, Default: DefaultWait, Dst: &b.wait},
		restutil.Duration{Field: "pollInterval", Text: cfg.PollInterval, Default: DefaultPoll, Dst: &b.poll},
		restutil.Duration{Field: "requestTimeout", Text: cfg.RequestTimeout, Default: DefaultTimeout, Dst: &timeout},
	); err != nil {
		return fail("%v", err)
	}
	hc, err := restutil.HTTPClient(cfg.CAFile, cfg.InsecureSkipVerify, timeout)
	if err != nil {
		return fail("xms %v", err)
	}
	if b.c, err = newClient(cfg.XMS, cfg.User, password, cfg.Cluster, hc); err != nil {
		return fail("%v", err)
	}
	return b, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return b.name }

// Capabilities implements backends.Backend.
func (b *Backend) Capabilities() backends.Capabilities {
	multi := []backends.AccessMode{backends.MultiNodeReaderOnly, backends.MultiNodeSingleWriter}
	return backends.Capabilities{
		AttachRequired: true,
		Block:          true,
		Mount:          true,
		MultiNodeMount: multi,
		MultiNodeBlock: append(multi, backends.MultiNodeMultiWriter),
		Clone:          true,
	}
}

// Parameters implements backends.Backend: no keys besides the common ones.
func (b *Backend) Parameters() []string { return nil }

// Probe implements backends.Backend.
func (b *Backend) Probe(ctx context.Context) error {
	_, err := b.clusterSpace(ctx)
	return err
}

// Error messages the XMS answers with that the backend acts on.
const (
	msgNotUnique   = "vol_obj_name_not_unique"
	msgNotFound    = "obj_not_found"
	msgVolNotFound = "vol_obj_not_found"
	msgBusy        = "system_is_busy"
	msgMapped      = "already_mapped"
)

var errorTable = []restutil.Rule[*APIError]{
	{Match: func(e *APIError) bool {
		return strings.Contains(e.Message, msgNotFound) || strings.Contains(e.Message, msgVolNotFound)
	}, Err: backends.ErrNotFound},
	{Match: func(e *APIError) bool {
		return strings.Contains(e.Message, msgBusy) || e.Status == 503 || e.Status == 502 || e.Status == 504
	}, Err: backends.ErrUnavailable},
	{Match: func(e *APIError) bool { return e.Status == 401 || e.Status == 403 }, Err: backends.ErrPermission},
	{Match: func(e *APIError) bool {
		return strings.Contains(e.Message, "space") || strings.Contains(e.Message, "capacity")
	}, Err: backends.ErrCapacity},
}

func mapErr(err error, what string) error {
	return restutil.Classify(err, what, errorTable, backends.ErrUnavailable)
}

func isAPI(err error, text string) bool {
	var api *APIError
	return errors.As(err, &api) && strings.Contains(api.Message, text)
}

var naaRE = regexp.MustCompile(`^[0-9a-f]{16}([0-9a-f]{16})?$`)
