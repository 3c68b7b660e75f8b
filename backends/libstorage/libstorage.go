// Package libstorage is the backend that serves CSI from an existing
// libStorage (REX-Ray) server: volumes are the server's volumes of one
// service, attached through its REST API with the target node's instance
// id. The server has no client tokens, no name de-duplication, deletes
// attached volumes and detaches every instance at once; the backend guards
// each of these itself (create looks the name up under a lock, delete
// refuses attached volumes, detach is only sent for the node holding the
// attachment, and single-node-writer is checked with backends.CheckAttach).
//
// The plugin's own facts about a volume (access type, access modes,
// creation parameters) travel in the create request's opts, which the
// server keeps as the volume's fields where its driver does (vfs does).
package libstorage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/lock"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// Type is the backend type name used in configuration.
const Type = "libstorage"

// Fields the backend keeps in a volume's opts.
const (
	FieldAccess      = "csi.access"
	FieldModes       = "csi.modes"
	FieldParamPrefix = "csi.param."
)

// Publish context keys.
const (
	PublishDeviceName = "deviceName"
	PublishInstanceID = "instanceID"
)

// Defaults.
const (
	DefaultTimeout  = 60 * time.Second
	DefaultByIDDir  = "/dev/disk/by-id"
	DefaultDevDir   = "/dev"
	DefaultStateDir = "/var/lib/csi-libstorage/libstorage"
)

// Storage types of libStorage drivers.
const (
	TypeBlock  = "block"
	TypeNAS    = "nas"
	TypeObject = "object"
)

// TLS configures https:// hosts.
type TLS struct {
	CA                 string `yaml:"ca"`
	Cert               string `yaml:"cert"`
	Key                string `yaml:"key"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
}

// Config is one libStorage backend instance as written in the
// configuration file.
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Host is the server: tcp://HOST:PORT, https://HOST:PORT, unix:///PATH.
	Host string `yaml:"host"`
	// Service is the libStorage service name (its driver instance).
	Service string `yaml:"service"`
	TLS     *TLS   `yaml:"tls"`
	// Token is a file holding the bearer token (JWT) the server wants.
	Token string `yaml:"token"`
	// Timeout bounds each HTTP request ("60s").
	Timeout string `yaml:"timeout"`
	// InstanceID is how this node names itself to the service; empty: as
	// the driver computes it (ebs: IMDS, scaleio: SDC GUID, vfs: the
	// hostname), else the CSI node id.
	InstanceID string `yaml:"instanceID"`
	// Nodes maps the CO node ids of other nodes to their instance ids, for
	// a controller that publishes volumes to nodes other than its own (a
	// node's own id needs no entry). A node in neither is unknown.
	Nodes map[string]string `yaml:"nodes"`
	// VFSRoot is where this node sees the server's vfs root (vfs only).
	VFSRoot string `yaml:"vfsRoot"`
	// StateDir keeps this node's record of the attachments it made itself.
	StateDir string `yaml:"stateDir"`
	// ByIDDir and DevDir are where the node looks for devices
	// (/dev/disk/by-id and /dev); RBDDir holds rbd's pool/image links
	// (/dev/rbd).
	ByIDDir string `yaml:"byIDDir"`
	DevDir  string `yaml:"devDir"`
	RBDDir  string `yaml:"rbdDir"`
	// AttachTimeout bounds the node's wait for an attached device ("30s").
	AttachTimeout string `yaml:"attachTimeout"`
}

// Options are the process-wide settings a backend needs.
type Options struct {
	NodeID string
	Logger *zap.Logger
	// PollInterval is the first delay between task polls (default 250ms).
	PollInterval time.Duration
	// IMDSEndpoint replaces the EC2 instance metadata endpoint (ebs).
	IMDSEndpoint string
}

// driverInfo is GET /services/{svc}.
type driverInfo struct {
	Name   string `json:"name"`
	Driver struct {
		Name       string `json:"name"`
		Type       string `json:"type"`
		NextDevice struct {
			Ignore  bool   `json:"ignore"`
			Prefix  string `json:"prefix"`
			Pattern string `json:"pattern"`
		} `json:"nextDevice"`
	} `json:"driver"`
}

// Backend is one libStorage backend instance.
type Backend struct {
	cfg        Config
	svc        string
	driver     string
	stype      string
	nextDev    driverInfo
	node       string
	c          *client
	log        *zap.Logger
	attachWait time.Duration
	imds       string

	locks lock.Keyed

	mu      sync.Mutex
	self    *instance
	pending map[string]int // volume name → create task still running
}

// New builds a backend and reads its service's driver from the server.
func New(cfg Config, opt Options) (backends.Backend, error) {
	fail := func(format string, a ...any) (backends.Backend, error) {
		return nil, fmt.Errorf("libstorage backend %q: "+format, append([]any{cfg.Name}, a...)...)
	}
	if cfg.Service == "" {
		return fail("service is required: the libStorage service name (ebs, vfs, ...)")
	}
	if strings.ContainsAny(cfg.Service, "/?#% ") {
		return fail("service %q is not a plain name", cfg.Service)
	}
	timeout := DefaultTimeout
	if cfg.Timeout != "" {
		d, err := time.ParseDuration(cfg.Timeout)
		if err != nil || d <= 0 {
			return fail("timeout %q: want a positive duration such as 60s", cfg.Timeout)
		}
		timeout = d
	}
	attachWait := 30 * time.Second
	if cfg.AttachTimeout != "" {
		d, err := time.ParseDuration(cfg.AttachTimeout)
		if err != nil || d <= 0 {
			return fail("attachTimeout %q: want a positive duration such as 30s", cfg.AttachTimeout)
		}
		attachWait = d
	}
	for _, d := range []*string{&cfg.VFSRoot, &cfg.StateDir, &cfg.ByIDDir, &cfg.DevDir, &cfg.RBDDir} {
		if *d != "" && (!filepath.IsAbs(*d) || filepath.Clean(*d) != *d) {
			return fail("%q must be an absolute, clean path", *d)
		}
	}
	if cfg.ByIDDir == "" {
		cfg.ByIDDir = DefaultByIDDir
	}
	if cfg.DevDir == "" {
		cfg.DevDir = DefaultDevDir
	}
	if cfg.RBDDir == "" {
		cfg.RBDDir = "/dev/rbd"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(DefaultStateDir, cfg.Name)
	}
	poll := opt.PollInterval
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	c, err := newClient(cfg, timeout, poll)
	if err != nil {
		return fail("%v", err)
	}
	b := &Backend{cfg: cfg, svc: cfg.Service, node: opt.NodeID, c: c, log: opt.Logger, attachWait: attachWait,
		imds: opt.IMDSEndpoint, pending: map[string]int{}}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	b.log = b.log.With(zap.String("backend", cfg.Name))
	if b.imds == "" {
		b.imds = "http://169.254.169.254"
	}
	// Bounded well below the minute Mesos gives a plugin to open its
	// socket: a server that is down fails the start, and the CO retries.
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 20*time.Second))
	defer cancel()
	if _, err := c.do(ctx, request{method: http.MethodGet, path: "/services/" + b.svc}, &b.nextDev); err != nil {
		return fail("read service %q from %s: %v", b.svc, cfg.Host, err)
	}
	b.driver, b.stype = b.nextDev.Driver.Name, b.nextDev.Driver.Type
	switch b.stype {
	case TypeBlock, TypeNAS, TypeObject:
	default:
		return fail("service %q has driver type %q; want block, nas or object", b.svc, b.stype)
	}
	if b.isVFS() && cfg.VFSRoot == "" {
		return fail("service %q is a vfs service: set vfsRoot to where this node sees the server's vfs root", b.svc)
	}
	b.log.Info("libStorage service", zap.String("service", b.svc), zap.String("driver", b.driver), zap.String("type", b.stype))
	if b.stype == TypeBlock && snapshotDrivers[b.driver] {
		return snapBackend{b}, nil
	}
	return b, nil
}

func (b *Backend) isVFS() bool { return b.driver == "vfs" }

// Driver returns the service's driver name and type.
func (b *Backend) Driver() (name, typ string) { return b.driver, b.stype }

// Name implements backends.Backend.
func (b *Backend) Name() string { return b.cfg.Name }

// Capabilities implements backends.Backend: block services serve block and
// mount, single node; NAS and object services serve mounts, on several
// nodes too, since their volumes are shared filesystems.
func (b *Backend) Capabilities() backends.Capabilities {
	c := backends.Capabilities{AttachRequired: true, Mount: true}
	switch b.stype {
	case TypeBlock:
		c.Block = true
	case TypeNAS:
		c.FilesystemTypes = []string{"nfs", "nfs4"}
		c.MultiNodeMount = []backends.AccessMode{backends.MultiNodeReaderOnly, backends.MultiNodeMultiWriter}
	case TypeObject:
		// Not nil: the node hands out a directory, not a device to
		// format, and its stats need no device identity.
		c.FilesystemTypes = []string{}
		c.MultiNodeMount = []backends.AccessMode{backends.MultiNodeReaderOnly, backends.MultiNodeMultiWriter}
	}
	return c
}

// Parameter keys: the libStorage create fields, and the dvdi / REX-Ray
// option names that map onto them.
var paramKeys = map[string]string{
	"iops": "iops", "type": "type", "volumetype": "type",
	"availabilityZone": "availabilityZone", "availabilityzone": "availabilityZone",
	"encrypted": "encrypted", "encryptionKey": "encryptionKey", "encryptionkey": "encryptionKey",
}

// Parameters implements backends.Backend.
func (b *Backend) Parameters() []string {
	out := make([]string, 0, len(paramKeys))
	for k := range paramKeys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Probe implements backends.Backend.
func (b *Backend) Probe(ctx context.Context) error {
	if _, err := b.c.do(ctx, request{method: http.MethodGet, path: "/services/" + b.svc}, nil); err != nil {
		return fmt.Errorf("%w: libStorage service %s: %v", backends.ErrUnavailable, b.svc, err)
	}
	return nil
}

// Capacity implements backends.Backend. libStorage reports no free space:
// the capacity is left unset (0 on the wire), never invented.
func (b *Backend) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	if _, err := createFields(params); err != nil {
		return 0, err
	}
	return 0, nil
}

// wireVolume is a libStorage Volume.
type wireVolume struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	Type             string            `json:"type"`
	Size             int64             `json:"size"`
	IOPS             int64             `json:"iops"`
	AvailabilityZone string            `json:"availabilityZone"`
	Status           string            `json:"status"`
	Encrypted        bool              `json:"encrypted"`
	AttachmentState  int               `json:"attachmentState"`
	Attachments      []wireAttachment  `json:"attachments"`
	Fields           map[string]string `json:"fields"`
}

type wireAttachment struct {
	VolumeID   string `json:"volumeID"`
	InstanceID struct {
		ID      string `json:"id"`
		Driver  string `json:"driver"`
		Service string `json:"service"`
	} `json:"instanceID"`
	DeviceName string `json:"deviceName"`
	Status     string `json:"status"`
}

// createBody carries only the fields the server's schema knows: anything
// else is answered with a 500.
type createBody struct {
	Name             string            `json:"name"`
	Size             *int64            `json:"size,omitempty"`
	IOPS             *int64            `json:"iops,omitempty"`
	Type             *string           `json:"type,omitempty"`
	AvailabilityZone *string           `json:"availabilityZone,omitempty"`
	Encrypted        *bool             `json:"encrypted,omitempty"`
	EncryptionKey    *string           `json:"encryptionKey,omitempty"`
	Opts             map[string]string `json:"opts,omitempty"`
}

// createFields turns parameters into create fields.
func createFields(params map[string]string) (createBody, error) {
	var out createBody
	for k, v := range params {
		f, ok := paramKeys[k]
		if !ok {
			continue
		}
		switch f {
		case "iops":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return out, fmt.Errorf("%w: parameter %s=%q: want a positive whole number", backends.ErrInvalid, k, v)
			}
			out.IOPS = &n
		case "type":
			if out.Type != nil && *out.Type != v {
				return out, fmt.Errorf("%w: parameters type and volumetype disagree", backends.ErrInvalid)
			}
			out.Type = &v
		case "availabilityZone":
			out.AvailabilityZone = &v
		case "encrypted":
			e, err := strconv.ParseBool(v)
			if err != nil {
				return out, fmt.Errorf("%w: parameter %s=%q: want true or false", backends.ErrInvalid, k, v)
			}
			out.Encrypted = &e
		case "encryptionKey":
			out.EncryptionKey = &v
		}
	}
	if out.EncryptionKey != nil && out.Encrypted != nil && !*out.Encrypted {
		return out, fmt.Errorf("%w: an encryption key was given with encrypted=false", backends.ErrInvalid)
	}
	return out, nil
}

func (b *Backend) volPath(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/?#%\\") || id == "." || id == ".." {
		return "", fmt.Errorf("%w: volume id %q", backends.ErrNotFound, id)
	}
	return "/volumes/" + b.svc + "/" + url.PathEscape(id), nil
}

// get reads one volume with its attachments.
func (b *Backend) get(ctx context.Context, id string) (*wireVolume, error) {
	p, err := b.volPath(id)
	if err != nil {
		return nil, err
	}
	var w wireVolume
	if _, err := b.c.do(ctx, request{method: http.MethodGet, path: p, query: "attachments=1"}, &w); err != nil {
		return nil, fmt.Errorf("volume %s: %w", id, err)
	}
	if w.ID == "" {
		w.ID = id
	}
	return &w, nil
}

// list reads every volume of the service, sorted by id.
func (b *Backend) list(ctx context.Context) ([]*wireVolume, error) {
	var m map[string]*wireVolume
	if _, err := b.c.do(ctx, request{method: http.MethodGet, path: "/volumes/" + b.svc, query: "attachments=1"}, &m); err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return sortedByID(m, func(w *wireVolume) *string { return &w.ID }), nil
}

// sortedByID turns a libStorage map (id → object) into a slice sorted by
// id, filling ids the objects leave out. The server lists everything, so
// the controller pages this list by id, which keeps its tokens stable.
func sortedByID[T any](m map[string]*T, id func(*T) *string) []*T {
	out := make([]*T, 0, len(m))
	for k, v := range m {
		if v == nil {
			continue
		}
		if p := id(v); *p == "" {
			*p = k
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return *id(out[i]) < *id(out[j]) })
	return out
}

// toVolume turns a wire volume into what the services see. Attachments are
// named by node: this node's instance is this node's id, any other
// instance id is taken as the node id.
func (b *Backend) toVolume(w *wireVolume) *backends.Volume {
	v := &backends.Volume{ID: w.ID, Name: w.Name, CapacityBytes: w.Size * units.GiB, Zone: w.AvailabilityZone, Parameters: map[string]string{}}
	for k, val := range w.Fields {
		if p, ok := strings.CutPrefix(k, FieldParamPrefix); ok {
			v.Parameters[p] = val
		}
	}
	v.Block = w.Fields[FieldAccess] == "block"
	for _, m := range strings.Split(w.Fields[FieldModes], ",") {
		if am, ok := backends.ParseAccessMode(m); ok {
			v.Modes = append(v.Modes, am)
		}
	}
	mode := backends.SingleNodeWriter
	if len(v.Modes) > 0 {
		mode = v.Modes[0]
	}
	selfID := b.selfID()
	for _, a := range w.Attachments {
		node := a.InstanceID.ID
		byNode := false
		if selfID != "" && node == selfID && b.node != "" {
			node = b.node
			byNode = b.byNode(w.ID)
		} else {
			for n, in := range b.cfg.Nodes {
				if in == a.InstanceID.ID {
					node = n
				}
			}
		}
		if slices.ContainsFunc(v.Attachments, func(x backends.Attachment) bool { return x.Node == node }) {
			continue
		}
		v.Attachments = append(v.Attachments, backends.Attachment{Node: node, Mode: mode, ReadOnly: mode.ReadOnly(), ByNode: byNode})
	}
	return v
}

// Get implements backends.Backend.
func (b *Backend) Get(ctx context.Context, id string) (*backends.Volume, error) {
	w, err := b.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return b.toVolume(w), nil
}

// List implements backends.Backend.
func (b *Backend) List(ctx context.Context) ([]*backends.Volume, error) {
	ws, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*backends.Volume, len(ws))
	for i, w := range ws {
		out[i] = b.toVolume(w)
	}
	return out, nil
}

// findByName returns the oldest volume called name (the server keeps
// duplicates that an earlier client made), or nil.
func (b *Backend) findByName(ctx context.Context, name string) (*wireVolume, error) {
	ws, err := b.list(ctx)
	if err != nil {
		return nil, err
	}
	var found []*wireVolume
	for _, w := range ws {
		if w.Name == name {
			found = append(found, w)
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	if len(found) > 1 {
		ids := make([]string, len(found))
		for i, w := range found {
			ids[i] = w.ID
		}
		b.log.Warn("the libStorage server holds several volumes of one name; using the first", zap.String("name", name), zap.Strings("ids", ids))
	}
	return found[0], nil
}

// sizeGiB picks the whole GiB a request asks for.
func sizeGiB(req backends.CreateRequest) (int64, error) {
	n := int64(1)
	if req.RequiredBytes > 0 {
		r, ok := units.RoundUp(req.RequiredBytes, units.GiB)
		if !ok {
			return 0, fmt.Errorf("%w: %d bytes", backends.ErrOutOfRange, req.RequiredBytes)
		}
		n = r / units.GiB
	}
	if req.LimitBytes > 0 && n*units.GiB > req.LimitBytes {
		return 0, fmt.Errorf("%w: libStorage sizes are whole GiB; %d GiB is above the limit of %d bytes", backends.ErrOutOfRange, n, req.LimitBytes)
	}
	return n, nil
}

func (b *Backend) compatible(w *wireVolume, req backends.CreateRequest) error {
	size := w.Size * units.GiB
	if req.RequiredBytes > size || req.LimitBytes > 0 && size > req.LimitBytes {
		return fmt.Errorf("%w: volume %q (%s) has %d GiB", backends.ErrAlreadyExists, req.Name, w.ID, w.Size)
	}
	if a, ok := w.Fields[FieldAccess]; ok && (a == "block") != req.Block {
		return fmt.Errorf("%w: volume %q (%s) is for %s access", backends.ErrAlreadyExists, req.Name, w.ID, a)
	}
	return nil
}

// Create implements backends.Backend. libStorage has no client token and
// does not de-duplicate names, so the name is looked up under this
// plugin's lock before creating, a create task still running from an
// earlier attempt is waited for instead of repeated, and after any failure
// the name is looked up again: a create whose answer was lost is found.
func (b *Backend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	if req.SourceSnapshot != "" || req.SourceVolume != "" {
		return nil, fmt.Errorf("%w: creating from a snapshot or volume", backends.ErrUnsupported)
	}
	return b.create(ctx, req, func(body createBody, out *wireVolume) error {
		_, err := b.c.call(ctx, request{method: http.MethodPost, path: "/volumes/" + b.svc, body: body}, out)
		return err
	})
}

// create runs the idempotent create around send, which makes the volume
// from the body.
func (b *Backend) create(ctx context.Context, req backends.CreateRequest, send func(createBody, *wireVolume) error) (*backends.Volume, error) {
	body, err := createFields(req.Parameters)
	if err != nil {
		return nil, err
	}
	gib, err := sizeGiB(req)
	if err != nil {
		return nil, err
	}
	unlock, err := b.locks.Lock(ctx, "name:"+req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if w, err := b.findByName(ctx, req.Name); err != nil {
		return nil, err
	} else if w != nil {
		if err := b.compatible(w, req); err != nil {
			return nil, err
		}
		return b.toVolume(w), nil
	}
	var w wireVolume
	b.mu.Lock()
	taskID, pending := b.pending[req.Name]
	b.mu.Unlock()
	if pending {
		err = b.c.wait(ctx, taskID, &w)
	} else {
		body.Name = req.Name
		body.Size = &gib
		body.Opts = map[string]string{FieldAccess: accessName(req.Block)}
		var modes []string
		for _, m := range req.Modes {
			modes = append(modes, m.String())
		}
		body.Opts[FieldModes] = strings.Join(modes, ",")
		for k, v := range req.Parameters {
			if k != "encryptionKey" && k != "encryptionkey" {
				body.Opts[FieldParamPrefix+k] = v
			}
		}
		err = send(body, &w)
	}
	var p *stillRunning
	b.mu.Lock()
	if errors.As(err, &p) {
		b.pending[req.Name] = p.id
	} else {
		delete(b.pending, req.Name)
	}
	b.mu.Unlock()
	if err != nil {
		if errors.Is(err, backends.ErrNotFound) || errors.Is(err, backends.ErrOutOfRange) {
			return nil, fmt.Errorf("create volume %q: %w", req.Name, err)
		}
		// The server may have made the volume although the answer was
		// lost: look again, with a deadline of its own.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.c.timeout)
		defer cancel()
		if found, ferr := b.findByName(lctx, req.Name); ferr == nil && found != nil {
			b.log.Info("create failed but the volume exists; using it", zap.String("name", req.Name), zap.String("id", found.ID), zap.Error(err))
			return b.toVolume(found), nil
		}
		return nil, fmt.Errorf("create volume %q: %w", req.Name, err)
	}
	b.log.Info("volume created", zap.String("name", req.Name), zap.String("id", w.ID), zap.Int64("GiB", w.Size))
	return b.toVolume(&w), nil
}

func accessName(block bool) string {
	if block {
		return "block"
	}
	return "mount"
}

// lockedGet takes this plugin's lock on the volume and reads it. A volume
// that does not exist gives nil and no error, with the lock released.
func (b *Backend) lockedGet(ctx context.Context, id string) (*wireVolume, func(), error) {
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return nil, nil, err
	}
	w, err := b.get(ctx, id)
	if err != nil {
		unlock()
		if errors.Is(err, backends.ErrNotFound) {
			err = nil
		}
		return nil, nil, err
	}
	return w, unlock, nil
}

// Delete implements backends.Backend. The server would delete an attached
// volume; the plugin refuses.
func (b *Backend) Delete(ctx context.Context, id string) error {
	w, unlock, err := b.lockedGet(ctx, id)
	if w == nil {
		return err
	}
	defer unlock()
	if len(w.Attachments) > 0 {
		var on []string
		for _, a := range w.Attachments {
			on = append(on, a.InstanceID.ID)
		}
		return fmt.Errorf("%w: volume %s is attached to %s; unpublish it first", backends.ErrInUse, id, strings.Join(on, ", "))
	}
	p, _ := b.volPath(id)
	if _, err := b.c.call(ctx, request{method: http.MethodDelete, path: p}, nil); err != nil && !errors.Is(err, backends.ErrNotFound) {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	b.clearByNode(id)
	b.log.Info("volume deleted", zap.String("id", id))
	return nil
}

// MarkFormatted implements backends.Backend. libStorage keeps nothing
// mutable with a volume, so there is nowhere to record the mark: the node
// relies on its probe alone, which never formats a device holding any
// signature or non-zero data.
func (b *Backend) MarkFormatted(ctx context.Context, id, fsType string) error { return nil }

// byNode markers: the attachments this node made itself (no
// ControllerPublish came first), which its unstage detaches again. They
// live in a file per volume so that a restarted plugin still knows them.
func (b *Backend) byNodePath(id string) string {
	return filepath.Join(b.cfg.StateDir, "bynode", url.PathEscape(id))
}

func (b *Backend) byNode(id string) bool {
	_, err := os.Stat(b.byNodePath(id))
	return err == nil
}

func (b *Backend) setByNode(id string) error {
	p := b.byNodePath(id)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record attachment by node: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *Backend) clearByNode(id string) {
	if err := os.Remove(b.byNodePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.log.Warn("remove attachment record", zap.String("id", id), zap.Error(err))
	}
}
