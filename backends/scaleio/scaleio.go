// Package scaleio is the Dell ScaleIO / PowerFlex backend. The controller
// side talks to the REST gateway through a thin client of its own (the
// vendor's Go client is not available here); the node side waits for the
// SDC's by-id link /dev/disk/by-id/emc-vol-<system>-<volume> and proves,
// before the node formats or mounts anything, that the link names the
// volume and that no other volume's link claims the same device.
//
// ScaleIO volumes carry no tags, so what the plugin must remember about a
// volume lives in its name (at most 31 characters):
//
//	<stem>-<hash>_<kind><modes><fs><mark>
//
// stem is up to 11 characters of the CSI name, hash 12 hex digits of the
// SHA-256 of the whole CSI name (so two CSI names never share a volume),
// kind is m (mount), b (block) or s (snapshot), modes two hex digits (one
// bit per access mode the volume was created for), fs the requested
// filesystem, mark the format mark of invariant 1, and by says whether the
// node service mapped the volume itself (n; the Mesos volume/csi isolator
// sends no ControllerPublish, and the node unmaps on unstage) or the
// controller did (c).
// Recording the mark renames the volume (setVolumeName), atomically on the
// storage, so every plugin process sees the same state.
package scaleio

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/lock"
	"github.com/csi-libstorage/csi-libstorage/internal/restutil"
)

// Type is the backend type name used in configuration.
const Type = "scaleio"

// Defaults.
const (
	DefaultByIDDir  = "/dev/disk/by-id"
	DefaultDrvCfg   = "/opt/emc/scaleio/sdc/bin/drv_cfg"
	DefaultWait     = 60 * time.Second
	DefaultPoll     = 250 * time.Millisecond
	DefaultTimeout  = 30 * time.Second
	AllocationBytes = 8 << 30 // ScaleIO allocates in 8 GiB multiples
	MaxNameLen      = 31
	MaxVolumeBytes  = 1 << 50 // 1 PiB, PowerFlex's largest volume
)

// CreateVolume parameters this backend accepts (besides the common ones).
const (
	// ParamProvisioning is "thin" or "thick"; the default is the config's.
	ParamProvisioning = "provisioning"
)

// ParameterKeys lists them.
var ParameterKeys = []string{ParamProvisioning}

// Config is one ScaleIO backend instance as written in the configuration
// file.
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Gateway is the REST gateway's URL (https://gw.example.com).
	Gateway string `yaml:"gateway"`
	User    string `yaml:"user"`
	// PasswordFile or PasswordEnv name where the password is; it never
	// appears in the configuration itself, in logs or in errors.
	PasswordFile string `yaml:"passwordFile"`
	PasswordEnv  string `yaml:"passwordEnv"`
	// System is the system's name or id (needed when the gateway manages
	// several; otherwise the only one is used).
	System           string `yaml:"system"`
	ProtectionDomain string `yaml:"protectionDomain"`
	StoragePool      string `yaml:"storagePool"`
	// Thick provisions new volumes thick; the default is thin.
	Thick bool `yaml:"thick"`
	// CAFile verifies the gateway's certificate; InsecureSkipVerify turns
	// verification off (test gateways only).
	CAFile             string `yaml:"caFile"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
	// SDCGUID is this node's SDC GUID; empty: asked from drv_cfg.
	SDCGUID string `yaml:"sdcGUID"`
	// DrvCfg is the path of the SDC's drv_cfg tool.
	DrvCfg string `yaml:"drvCfg"`
	// ByIDDir holds the SDC's device links (/dev/disk/by-id).
	ByIDDir string `yaml:"byIDDir"`
	// AttachTimeout bounds the wait for a mapped volume's device;
	// PollInterval is the delay between looks ("60s", "250ms").
	AttachTimeout string `yaml:"attachTimeout"`
	PollInterval  string `yaml:"pollInterval"`
	// RequestTimeout bounds one gateway request ("30s").
	RequestTimeout string `yaml:"requestTimeout"`
	// SDCDisconnectGrace is how long the gateway must report a holder's
	// SDC disconnected, without a break, before an attach elsewhere unmaps
	// it (docs/backends/scaleio.md#failover); "0s" takes it on the first
	// report, "off" never ("30s").
	SDCDisconnectGrace string `yaml:"sdcDisconnectGrace"`
}

// Options are what configuration cannot carry.
type Options struct {
	// NodeID is the plugin's node id as the CO knows it.
	NodeID string
	Logger *zap.Logger
	// Events receives automatic takeovers (and fences); nil reports nothing.
	Events backends.Events
	// QueryGUID returns this node's SDC GUID; nil runs drv_cfg
	// --query_guid (unless the config names the GUID).
	QueryGUID func(ctx context.Context) (string, error)
	// Rescan asks the SDC to look for newly mapped volumes; nil runs
	// drv_cfg --rescan when drv_cfg exists.
	Rescan func(ctx context.Context) error
}

// Backend is one ScaleIO backend instance.
type Backend struct {
	name   string
	cfg    Config
	c      *client
	log    *zap.Logger
	node   string
	byID   string
	wait   time.Duration
	poll   time.Duration
	guidFn func(ctx context.Context) (string, error)
	rescan func(ctx context.Context) error

	locks lock.Keyed

	events backends.Events
	// grace is SDCDisconnectGrace; negative: no automatic takeover.
	grace   time.Duration
	watchMu sync.Mutex
	// offSince is when this process first saw each SDC (by id)
	// disconnected, since it last saw it connected.
	offSince map[string]time.Time

	mu       sync.Mutex
	systemID string
	pdID     string
	poolID   string
	guid     string
}

var sdcGUIDRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// New checks the configuration and returns the backend; it does not talk to
// the gateway yet, so a plugin starts while the gateway is down.
func New(cfg Config, o Options) (*Backend, error) {
	fail := func(format string, a ...any) (*Backend, error) {
		return nil, fmt.Errorf("scaleio backend %q: "+format, append([]any{cfg.Name}, a...)...)
	}
	if cfg.Gateway == "" || cfg.User == "" {
		return fail("gateway and user are required")
	}
	if cfg.ProtectionDomain == "" || cfg.StoragePool == "" {
		return fail("protectionDomain and storagePool are required")
	}
	password, err := restutil.ReadPassword(cfg.PasswordFile, cfg.PasswordEnv)
	if err != nil {
		return fail("%v", err)
	}
	if cfg.SDCGUID != "" && !sdcGUIDRE.MatchString(cfg.SDCGUID) {
		return fail("sdcGUID %q is not a GUID", cfg.SDCGUID)
	}
	b := &Backend{name: cfg.Name, cfg: cfg, log: o.Logger, node: o.NodeID, byID: cfg.ByIDDir, rescan: o.Rescan, guidFn: o.QueryGUID,
		events: o.Events, offSince: map[string]time.Time{}}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	b.log = b.log.With(zap.String("backend", cfg.Name))
	if b.byID == "" {
		b.byID = DefaultByIDDir
	}
	var timeout time.Duration
	if err := restutil.ParseDurations(
		restutil.Duration{Field: "attachTimeout", Text: cfg.AttachTimeout, Default: DefaultWait, Dst: &b.wait},
		restutil.Duration{Field: "pollInterval", Text: cfg.PollInterval, Default: DefaultPoll, Dst: &b.poll},
		restutil.Duration{Field: "requestTimeout", Text: cfg.RequestTimeout, Default: DefaultTimeout, Dst: &timeout},
	); err != nil {
		return fail("%v", err)
	}
	if b.grace, err = parseGrace(cfg.SDCDisconnectGrace); err != nil {
		return fail("%v", err)
	}
	drv := cfg.DrvCfg
	if drv == "" {
		drv = DefaultDrvCfg
	}
	if cfg.SDCGUID != "" {
		guid := strings.ToUpper(cfg.SDCGUID)
		b.guidFn = func(context.Context) (string, error) { return guid, nil }
	}
	if b.guidFn == nil {
		b.guidFn = func(ctx context.Context) (string, error) { return queryGUID(ctx, drv) }
	}
	if b.rescan == nil {
		b.rescan = func(ctx context.Context) error { return rescanSDC(ctx, drv) }
	}
	hc, err := restutil.HTTPClient(cfg.CAFile, cfg.InsecureSkipVerify, timeout)
	if err != nil {
		return fail("gateway %v", err)
	}
	if b.c, err = newClient(cfg.Gateway, cfg.User, password, hc); err != nil {
		return fail("%v", err)
	}
	return b, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return b.name }

// Capabilities implements backends.Backend. ScaleIO maps a volume to
// several SDCs, so the multi-node modes are offered; CheckAttach enforces
// their rules.
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

// Parameters implements backends.Backend.
func (b *Backend) Parameters() []string { return ParameterKeys }

// Probe implements backends.Backend: the gateway answers and the
// configured system, protection domain and pool exist.
func (b *Backend) Probe(ctx context.Context) error {
	_, err := b.resolve(ctx)
	return err
}

type placement struct{ system, pd, pool string }

// resolve finds the ids of the configured system, protection domain and
// storage pool, once.
func (b *Backend) resolve(ctx context.Context) (placement, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.poolID != "" {
		return placement{b.systemID, b.pdID, b.poolID}, nil
	}
	systems, err := b.c.systems(ctx)
	if err != nil {
		return placement{}, mapErr(err, "list systems")
	}
	var sys string
	for _, s := range systems {
		if b.cfg.System == "" && len(systems) == 1 || s.ID == b.cfg.System || s.Name == b.cfg.System {
			sys = s.ID
		}
	}
	if sys == "" {
		return placement{}, fmt.Errorf("%w: system %q not found on the gateway (%d systems); set system to its name or id", backends.ErrUnavailable, b.cfg.System, len(systems))
	}
	pds, err := b.c.protectionDomains(ctx)
	if err != nil {
		return placement{}, mapErr(err, "list protection domains")
	}
	var pd string
	for _, p := range pds {
		if (p.Name == b.cfg.ProtectionDomain || p.ID == b.cfg.ProtectionDomain) && (p.SystemID == "" || p.SystemID == sys) {
			pd = p.ID
		}
	}
	if pd == "" {
		return placement{}, fmt.Errorf("%w: protection domain %q not found in system %s", backends.ErrUnavailable, b.cfg.ProtectionDomain, sys)
	}
	pools, err := b.c.storagePools(ctx, pd)
	if err != nil {
		return placement{}, mapErr(err, "list storage pools")
	}
	for _, p := range pools {
		if p.Name == b.cfg.StoragePool || p.ID == b.cfg.StoragePool {
			b.systemID, b.pdID, b.poolID = sys, pd, p.ID
			return placement{sys, pd, p.ID}, nil
		}
	}
	return placement{}, fmt.Errorf("%w: storage pool %q not found in protection domain %q", backends.ErrUnavailable, b.cfg.StoragePool, b.cfg.ProtectionDomain)
}
