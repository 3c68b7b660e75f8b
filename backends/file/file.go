// Package file is the embedded default backend: a pool directory of sparse
// image files, one per volume, handed to nodes as loop devices.
//
// The pool may sit on a filesystem that several nodes share (the "storage
// network" of a small cluster). All state lives in the pool, written
// atomically and guarded by record locks that the shared filesystem carries
// between its clients, so plugin processes on different nodes stay
// consistent without talking to each other:
//
//	<dir>/pool.lock                one byte-range lock per volume and per name
//	<dir>/vols/<key>.json          a volume's metadata and its name's reservation (mode 0600)
//	<dir>/vols/<id>.img            its data, made when a node first connects it
//	<dir>/volumes/<id>/meta.json   the metadata of a volume made before the flat layout
//	<dir>/volumes/<id>/disk.img    its data
//	<dir>/names/<sha256 of name>   the id such a volume's name was given
//	<dir>/nodes/<node id>.json     nodes that registered with the pool
//	<dir>/leases/<node id>.lease   the node's lease, renewed by the pool's clock (lease.go)
//
// New volumes use the flat layout (flat.go), which costs one new inode per
// create instead of four; volumes in the directory layout of older
// versions keep it for life, and every operation reads both.
package file

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// Type is the backend type name used in configuration.
const Type = "file"

// ParamPreallocate asks for a fully allocated image instead of a sparse one.
const ParamPreallocate = "preallocate"

const (
	// MinSize is the smallest volume: small enough for tests, large enough
	// for an ext4 journal.
	MinSize = 16 * units.MiB
	// MinSizeXFS is the smallest filesystem mkfs.xfs accepts.
	MinSizeXFS = 300 * units.MiB
	// DefaultSize is used when the request names no size.
	DefaultSize = 1 * units.GiB
)

// Config is one file backend instance as written in the plugin's
// configuration file.
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Dir is the pool directory.
	Dir string `yaml:"dir"`
	// Capacity caps the sum of all volume sizes ("500GiB"); empty means
	// the free space of the pool's filesystem.
	Capacity string `yaml:"capacity"`
	// DefaultSize is the size of a volume created without one.
	DefaultSize string `yaml:"defaultSize"`
	// DirectIO makes loop devices bypass the page cache of the pool
	// filesystem (default true), so data is not cached twice and a node's
	// writes reach shared storage without waiting for writeback.
	DirectIO *bool `yaml:"directIO"`
	// Shared says the pool is on storage every node mounts; New then
	// refuses a pool directory that is not such a mount (shared.go).
	Shared bool `yaml:"shared"`
	// Lease is how long a node's lease on the pool lasts ("15s" when
	// empty); "0" turns automatic failover off (docs/failover.md).
	Lease string `yaml:"lease"`
}

// Options are the process-wide settings a backend needs.
type Options struct {
	NodeID string
	Logger *zap.Logger
	// Events receives automatic takeovers (and fences); nil reports nothing.
	Events backends.Events
}

// Backend is a file pool.
type Backend struct {
	name        string
	dir         string
	capacity    int64
	defaultSize int64
	directIO    bool
	node        string
	log         *zap.Logger
	events      backends.Events
	// lease is the lease period; 0 turns automatic failover off.
	lease  time.Duration
	leases *fsutil.Leases
	keeper keeper
	// renewHook, set by tests only, runs before each renewal; an error
	// fails it, as a pool cut off from this node would.
	renewHook func() error
	// locks guards volumes and names pool-wide: see fsutil.KeyLocks.
	locks *fsutil.KeyLocks
	// names, volumes and vols group-commit the fsyncs of their directories.
	names, volumes, vols *fsutil.DirSyncer
	avail                struct {
		mu       sync.Mutex
		at       time.Time
		took     time.Duration // how long the last scan took
		bytes    int64
		scanning bool
	}
	metas struct {
		mu sync.Mutex
		m  map[string]cachedMeta
		// seed keys the cache by content, randomly per process, so
		// no file can be made to collide with another's on purpose.
		seed maphash.Seed
		// shared holds the parameter sets and mode lists that cached
		// volumes share (intern).
		shared map[string]any
	}
	// loops remembers the loop device this process connected for each
	// volume; a hit is proven with one status ioctl before use.
	loops struct {
		mu sync.Mutex
		m  map[string]string
	}
}

var (
	idRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	nodeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// New opens (creating if needed) the pool described by cfg.
func New(cfg Config, opt Options) (*Backend, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("file backend %q: dir is required", cfg.Name)
	}
	if !filepath.IsAbs(cfg.Dir) {
		abs, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, err
		}
		cfg.Dir = abs
	}
	b := &Backend{
		name:        cfg.Name,
		dir:         filepath.Clean(cfg.Dir),
		defaultSize: DefaultSize,
		directIO:    cfg.DirectIO == nil || *cfg.DirectIO,
		node:        opt.NodeID,
		log:         opt.Logger,
		events:      opt.Events,
	}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	b.log = b.log.With(zap.String("backend", cfg.Name))
	b.metas.seed = maphash.MakeSeed()
	var err error
	if b.lease, err = parseLease(cfg.Lease); err != nil {
		return nil, fmt.Errorf("file backend %q: %w", cfg.Name, err)
	}
	if cfg.Capacity != "" {
		if b.capacity, err = units.ParseSize(cfg.Capacity); err != nil {
			return nil, fmt.Errorf("file backend %q: capacity: %w", cfg.Name, err)
		}
	}
	if cfg.DefaultSize != "" {
		if b.defaultSize, err = units.ParseSize(cfg.DefaultSize); err != nil {
			return nil, fmt.Errorf("file backend %q: defaultSize: %w", cfg.Name, err)
		}
	}
	// Before MkdirAll, which would otherwise make the pool on this node's
	// own disk under an empty mount point.
	if cfg.Shared {
		if err := checkShared(b.dir, SharedFSTypes); err != nil {
			return nil, fmt.Errorf("file backend %q: %w", cfg.Name, err)
		}
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("file backend %q: create pool %s: %w", cfg.Name, b.dir, err)
	}
	st, err := os.Stat(b.dir)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o002 != 0 {
		return nil, fmt.Errorf("file backend %q: pool %s is world-writable (mode %v); anyone could plant or swap volume images: chmod o-w %s",
			cfg.Name, b.dir, st.Mode().Perm(), b.dir)
	}
	for _, sub := range []string{"vols", "volumes", "names", "nodes", "leases"} {
		if err := os.MkdirAll(filepath.Join(b.dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("file backend %q: %w", cfg.Name, err)
		}
	}
	b.leases = fsutil.NewLeases(leaseDir(b.dir))
	// Take one lock now, so a kernel or filesystem without record locks
	// stops the plugin at start instead of failing its first operation.
	b.locks = fsutil.NewKeyLocks(filepath.Join(b.dir, "pool.lock"))
	b.names = fsutil.NewDirSyncer(filepath.Join(b.dir, "names"))
	b.volumes = fsutil.NewDirSyncer(filepath.Join(b.dir, "volumes"))
	b.vols = fsutil.NewDirSyncer(filepath.Join(b.dir, "vols"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := b.locks.Lock(ctx, "pool")
	if err != nil {
		return nil, fmt.Errorf("file backend %q: pool %s needs fcntl record locks: %w", cfg.Name, b.dir, err)
	}
	l.Close()
	return b, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return b.name }

// Dir returns the pool directory.
func (b *Backend) Dir() string { return b.dir }

// Capabilities implements backends.Backend. Several nodes may read one
// image, but ext4, xfs and btrfs are not cluster filesystems, so writers on
// several nodes are allowed only for raw block users who coordinate
// themselves.
func (b *Backend) Capabilities() backends.Capabilities {
	return backends.Capabilities{
		Clone:          true,
		AttachRequired: true,
		Block:          true,
		Mount:          true,
		MultiNodeMount: []backends.AccessMode{backends.MultiNodeReaderOnly},
		MultiNodeBlock: []backends.AccessMode{backends.MultiNodeReaderOnly, backends.MultiNodeSingleWriter, backends.MultiNodeMultiWriter},
	}
}

// Parameters implements backends.Backend.
func (b *Backend) Parameters() []string { return []string{ParamPreallocate} }

// Probe implements backends.Backend.
func (b *Backend) Probe(ctx context.Context) error {
	if err := unix.Access(filepath.Join(b.dir, "vols"), unix.W_OK); err != nil {
		return fmt.Errorf("%w: pool %s is not writable: %v", backends.ErrUnavailable, b.dir, err)
	}
	return nil
}

type meta struct {
	Version       int               `json:"version"`
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	CapacityBytes int64             `json:"capacityBytes"`
	Parameters    map[string]string `json:"parameters,omitempty"`
	Modes         []string          `json:"modes,omitempty"`
	Block         bool              `json:"block,omitempty"`
	Attachments   []attachment      `json:"attachments,omitempty"`
	Formatted     string            `json:"formatted,omitempty"`
	Created       time.Time         `json:"created"`
	// What the volume was created from, if anything.
	SourceSnapshot string `json:"sourceSnapshot,omitempty"`
	SourceVolume   string `json:"sourceVolume,omitempty"`
	// NoImage says the image has not been made yet (flat layout): it
	// reads as all zeros, and the first Connect makes it.
	NoImage bool `json:"noImage,omitempty"`
	// Filling marks a create that is still copying or allocating the
	// image: such a volume does not exist yet for anyone but its create.
	Filling bool `json:"filling,omitempty"`
}

type attachment struct {
	Node      string `json:"node"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	Mode      string `json:"mode"`
	ByNode    bool   `json:"byNode,omitempty"`
	Connected bool   `json:"connected,omitempty"`
}

func (m *meta) volume() *backends.Volume {
	v := &backends.Volume{
		ID:             m.ID,
		Name:           m.Name,
		CapacityBytes:  m.CapacityBytes,
		Parameters:     maps.Clone(m.Parameters),
		Block:          m.Block,
		Formatted:      m.Formatted,
		SourceSnapshot: m.SourceSnapshot,
		SourceVolume:   m.SourceVolume,
	}
	for _, name := range m.Modes {
		mode, _ := backends.ParseAccessMode(name)
		v.Modes = append(v.Modes, mode)
	}
	for _, a := range m.Attachments {
		mode, _ := backends.ParseAccessMode(a.Mode)
		v.Attachments = append(v.Attachments, backends.Attachment{Node: a.Node, ReadOnly: a.ReadOnly, Mode: mode, ByNode: a.ByNode, Connected: a.Connected})
	}
	return v
}

func (b *Backend) volDir(id string) string { return filepath.Join(b.dir, "volumes", id) }

func (b *Backend) metaPath(id string) string {
	if isFlat(id) {
		return b.flatMetaPath(id[:keyLen])
	}
	return filepath.Join(b.volDir(id), "meta.json")
}

func (b *Backend) imagePath(id string) string {
	if isFlat(id) {
		return filepath.Join(b.dir, "vols", id+".img")
	}
	return filepath.Join(b.volDir(id), "disk.img")
}

func (b *Backend) namePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(b.dir, "names", hex.EncodeToString(sum[:]))
}

// ImagePath returns the image of a volume; tests and tools use it.
func (b *Backend) ImagePath(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("volume %q: %w", id, backends.ErrNotFound)
	}
	return b.imagePath(id), nil
}

// readMeta reads a volume's metadata from disk. Every read that leads to a
// write (attach, detach, connect, mark formatted, delete, expand,
// snapshot) reads this way, under the volume lock: no cache key can tell
// two same-size writes within one mtime tick apart, ext4 reuses inode
// numbers at once, and NFS clients cache attributes.
func (b *Backend) readMeta(id string) (*meta, error) {
	f, err := b.openMeta(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return b.parseMeta(id, data)
}

// sharedMeta is readMeta for Get, List and the capacity scan only, which
// decide nothing: the file is read, and bytes that hash as the cached ones
// did are not parsed again. The key is the content, not the inode, size
// and modification time: a flat file's name outlives its volume, and a
// name deleted and made anew within one timestamp tick can get the freed
// inode back with metadata of the same length. The result is the cached
// value itself, not a copy: callers only read it (meta.volume copies what
// it hands out).
func (b *Backend) sharedMeta(id string) (*meta, error) {
	if !validID(id) {
		return nil, fmt.Errorf("volume %q: %w", id, backends.ErrNotFound)
	}
	return b.sharedMetaAt(cacheName(id), b.metaPath(id), id)
}

// cacheName is the name a volume's metadata is cached under: the file's,
// which for a flat volume is its key, as List finds it.
func cacheName(id string) string {
	if isFlat(id) {
		return id[:keyLen]
	}
	return id
}

// sharedMetaAt is sharedMeta of the file at path, cached under name; id is
// the volume it must hold, or "" for whichever (a flat file, listed).
func (b *Backend) sharedMetaAt(name, path, id string) (*meta, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", name, backends.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	key := maphash.Bytes(b.metas.seed, data)
	b.metas.mu.Lock()
	c, ok := b.metas.m[name]
	b.metas.mu.Unlock()
	if ok && c.key == key && (id == "" || c.meta.ID == id) {
		return c.meta, nil
	}
	m, err := b.parseMeta(id, data)
	if err != nil {
		return nil, err
	}
	b.metas.mu.Lock()
	if b.metas.m == nil {
		b.metas.m = map[string]cachedMeta{}
	}
	b.intern(m)
	b.metas.m[name] = cachedMeta{key: key, meta: m}
	b.metas.mu.Unlock()
	return m, nil
}

func (b *Backend) openMeta(id string) (*os.File, error) {
	if !validID(id) {
		return nil, fmt.Errorf("volume %q: %w", id, backends.ErrNotFound)
	}
	f, err := os.Open(b.metaPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
	}
	return f, err
}

// parseMeta parses the metadata of volume id; id "" takes the volume a
// flat file holds, whichever it is.
func (b *Backend) parseMeta(id string, data []byte) (*meta, error) {
	if len(bytes.Trim(data, "\x00 \n")) == 0 {
		// A create died between writing the file and syncing it, and the
		// crash kept the file but not its bytes: never finished.
		return nil, fmt.Errorf("volume %s: metadata was never completed: %w", id, backends.ErrNotFound)
	}
	m := new(meta)
	if err := json.Unmarshal(data, m); err != nil {
		if id == "" || isFlat(id) {
			// Written in place by a create that has not answered yet,
			// or that a crash cut short (see createFlat).
			return nil, fmt.Errorf("volume %s: metadata is being written: %w", id, backends.ErrNotFound)
		}
		return nil, fmt.Errorf("volume %s: corrupt metadata %s: %w", id, b.metaPath(id), err)
	}
	if (id != "" && m.ID != id) || m.Filling || !validID(m.ID) {
		// The flat file of this name now holds another volume (this
		// one was deleted and the name made anew), or a create that
		// has not finished.
		return nil, fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
	}
	return m, nil
}

// maxInterned bounds the table of shared parameter sets and mode lists:
// a pool has a handful, and a caller who sends a new set with every
// create must not grow it without end.
const maxInterned = 256

// intern makes a cached volume share its parameters and access modes with
// the other cached volumes that have the same: in a pool of thousands they
// would otherwise be thousands of equal maps, a third of the cache. Cached
// metadata is only read (meta.volume copies what it hands out). The
// caller holds b.metas.mu.
func (b *Backend) intern(m *meta) {
	if b.metas.shared == nil {
		b.metas.shared = map[string]any{}
	}
	share := func(key string, v any) any {
		if old, ok := b.metas.shared[key]; ok {
			return old
		}
		if len(b.metas.shared) < maxInterned {
			b.metas.shared[key] = v
		}
		return v
	}
	if len(m.Parameters) > 0 {
		keys := slices.Sorted(maps.Keys(m.Parameters))
		var sb strings.Builder
		sb.WriteString("p")
		for _, k := range keys {
			fmt.Fprintf(&sb, "\x00%s\x00%s", k, m.Parameters[k])
		}
		m.Parameters = share(sb.String(), m.Parameters).(map[string]string)
	}
	if len(m.Modes) > 0 {
		m.Modes = share("m\x00"+strings.Join(m.Modes, "\x00"), m.Modes).([]string)
	}
}

type cachedMeta struct {
	key  uint64
	meta *meta
}

// forget drops a deleted volume from the metadata cache.
func (b *Backend) forget(id string) {
	b.metas.mu.Lock()
	delete(b.metas.m, cacheName(id))
	b.metas.mu.Unlock()
}

func (b *Backend) writeMeta(m *meta) error {
	if isFlat(m.ID) {
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return b.replaceFlat(m.ID, data)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(b.metaPath(m.ID), data, 0o600)
}

// lockVolume takes the volume's pool-wide lock, a byte of the pool's lock
// file. The lock outlives the volume, which is harmless: ids are random and
// never reused, and whoever takes the lock of a deleted volume finds no
// metadata under it.
func (b *Backend) lockVolume(ctx context.Context, id string) (*fsutil.KeyLock, error) {
	if !validID(id) {
		return nil, fmt.Errorf("volume %q: %w", id, backends.ErrNotFound)
	}
	probe := b.volDir(id)
	if isFlat(id) {
		probe = b.metaPath(id) // perhaps another volume's: readMeta tells
	}
	if _, err := os.Stat(probe); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
	}
	l, err := b.locks.Lock(ctx, "volume "+id)
	if err != nil {
		return nil, fmt.Errorf("lock volume %s: %w", id, err)
	}
	return l, nil
}

// lockName takes the pool-wide lock of a name reservation file.
func (b *Backend) lockName(ctx context.Context, path string) (*fsutil.KeyLock, error) {
	rel, err := filepath.Rel(b.dir, path)
	if err != nil {
		return nil, err
	}
	return b.locks.Lock(ctx, "name "+rel)
}

// update runs fn on the volume's metadata under its lock and writes the
// result back if fn reports a change.
func (b *Backend) update(ctx context.Context, id string, fn func(m *meta) (changed bool, err error)) (*meta, error) {
	l, err := b.lockVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	m, err := b.readMeta(id)
	if err != nil {
		return nil, err
	}
	changed, err := fn(m)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := b.writeMeta(m); err != nil {
			return nil, fmt.Errorf("volume %s: write metadata: %w", id, err)
		}
		fault.Point("file.metadata.updated")
	}
	return m, nil
}

// Create implements backends.Backend. New volumes use the flat layout
// (createFlat). A name still reserved in the directory layout of older
// versions answers with its volume; if that volume never got its metadata
// (a create a crash cut short), it is discarded with whatever it left and
// the name is made anew in the flat layout. Both layouts take the same
// name lock, so they cannot both make a volume of one name.
func (b *Backend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	size, err := b.size(req)
	if err != nil {
		return nil, err
	}
	prealloc := false
	if s, ok := req.Parameters[ParamPreallocate]; ok {
		if prealloc, err = strconv.ParseBool(s); err != nil {
			return nil, fmt.Errorf("%w: parameter %s=%q: want true or false", backends.ErrInvalid, ParamPreallocate, s)
		}
	}

	namePath := b.namePath(req.Name)
	nameLock, err := b.lockName(ctx, namePath)
	if err != nil {
		return nil, fmt.Errorf("lock name %q: %w", req.Name, err)
	}
	defer nameLock.Close()

	id, exists, err := readName(namePath)
	if err != nil {
		return nil, err
	}
	if id != "" {
		m, err := b.readMeta(id)
		switch {
		case err == nil:
			// Made by an earlier call, which may have died before its
			// syncs: make sure before answering.
			if err := b.syncVolume(id); err != nil {
				return nil, fmt.Errorf("volume %s: %w", id, err)
			}
			return compatible(m, req, size)
		case !errors.Is(err, backends.ErrNotFound):
			return nil, err
		}
		if err := b.discard(ctx, id); err != nil {
			return nil, err
		}
	}
	if exists {
		if err := removeFile(namePath); err != nil {
			return nil, fmt.Errorf("release name %q: %w", req.Name, err)
		}
		if err := b.names.Sync(); err != nil {
			return nil, fmt.Errorf("release name %q: %w", req.Name, err)
		}
	}
	return b.createFlat(ctx, req, size, prealloc)
}

func compatible(m *meta, req backends.CreateRequest, size int64) (*backends.Volume, error) {
	switch {
	case m.CapacityBytes < req.RequiredBytes || (req.LimitBytes > 0 && m.CapacityBytes > req.LimitBytes):
		return nil, fmt.Errorf("%w: volume %q exists with %d bytes, outside the requested range %d..%d",
			backends.ErrAlreadyExists, req.Name, m.CapacityBytes, req.RequiredBytes, req.LimitBytes)
	case req.RequiredBytes == 0 && req.LimitBytes == 0 && m.CapacityBytes != size:
		return nil, fmt.Errorf("%w: volume %q exists with %d bytes, not the default %d",
			backends.ErrAlreadyExists, req.Name, m.CapacityBytes, size)
	case !maps.Equal(m.Parameters, req.Parameters) && !(len(m.Parameters) == 0 && len(req.Parameters) == 0):
		return nil, fmt.Errorf("%w: volume %q exists with parameters %v", backends.ErrAlreadyExists, req.Name, m.Parameters)
	case m.Block != req.Block:
		return nil, fmt.Errorf("%w: volume %q exists with block=%t", backends.ErrAlreadyExists, req.Name, m.Block)
	case m.SourceSnapshot != req.SourceSnapshot || m.SourceVolume != req.SourceVolume:
		return nil, fmt.Errorf("%w: volume %q exists with another content source", backends.ErrAlreadyExists, req.Name)
	}
	return m.volume(), nil
}

// size picks the volume size for a request: the default when none is
// given, rounded up to whole MiB, never below what the filesystem needs.
func (b *Backend) size(req backends.CreateRequest) (int64, error) {
	min := MinSize
	if req.FSType == "xfs" {
		min = MinSizeXFS
	}
	size := req.RequiredBytes
	if size == 0 {
		size = b.defaultSize
		if req.LimitBytes > 0 && req.LimitBytes < size {
			size = req.LimitBytes / units.MiB * units.MiB
		}
	}
	size = max(size, min)
	size, ok := units.RoundUp(size, units.MiB)
	if !ok {
		return 0, fmt.Errorf("%w: %d bytes", backends.ErrOutOfRange, req.RequiredBytes)
	}
	if req.LimitBytes > 0 && size > req.LimitBytes {
		return 0, fmt.Errorf("%w: the smallest volume this pool makes for the request is %s, above the limit of %d bytes",
			backends.ErrOutOfRange, units.Format(size), req.LimitBytes)
	}
	return size, nil
}

func (b *Backend) checkCapacity(ctx context.Context, size int64) error {
	release, err := b.reserve(ctx, size)
	if err != nil {
		return err
	}
	release(true)
	return nil
}

// reserve takes size bytes from the pool's available space for a volume
// being created or grown. The figure is rescanned at most once a second and
// kept current in between by the reservations themselves, so creating
// volumes does not rescan thousands of images each time. release(false)
// gives the bytes back when the operation failed.
func (b *Backend) reserve(ctx context.Context, size int64) (func(ok bool), error) {
	if err := b.refreshCapacity(ctx, time.Second); err != nil {
		return nil, err
	}
	b.avail.mu.Lock()
	defer b.avail.mu.Unlock()
	if size > b.avail.bytes {
		return nil, fmt.Errorf("%w: %s requested, %s available in pool %s", backends.ErrCapacity, units.Format(size), units.Format(max(0, b.avail.bytes)), b.name)
	}
	b.avail.bytes -= size
	return func(ok bool) {
		if !ok {
			b.avail.mu.Lock()
			b.avail.bytes += size
			b.avail.mu.Unlock()
		}
	}, nil
}

func (b *Backend) makeImage(id string, size int64, prealloc bool) error {
	f, err := os.OpenFile(b.imagePath(id), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("size image: %w", err)
	}
	if prealloc {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return fmt.Errorf("%w: allocate %s: %v", backends.ErrCapacity, units.Format(size), err)
			}
			return fmt.Errorf("allocate image: %w", err)
		}
	}
	// Made durable with the rest of the volume by syncVolume.
	return f.Close()
}

// reservation reads the id the name file at path holds; empty when it
// holds none. The caller holds the name's lock.
func reservation(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read name reservation: %w", err)
	}
	if id := strings.TrimSpace(string(data)); idRE.MatchString(id) {
		return id, nil
	}
	return "", nil
}

// reserve writes a new id into the name file at path, atomically and
// durably, before anything is created under that id. The caller holds the
// name's lock.
func reserve(path string) (string, error) {
	id, err := newID()
	if err != nil {
		return "", err
	}
	if err := fsutil.WriteFileAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("reserve name: %w", err)
	}
	return id, nil
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Delete implements backends.Backend; a volume of the flat layout goes to
// deleteFlat. In the directory layout the name, the image, the metadata
// and the directory are removed first and made durable together at the
// end, where concurrent deletes share the directory fsyncs. Whatever
// subset of the removals a crash keeps is safe: a volume whose name is
// gone is still listed and its delete is retried; a name whose volume is
// gone or lost its metadata is discarded by the next create of that name.
func (b *Backend) Delete(ctx context.Context, id string) error {
	if isFlat(id) && validID(id) {
		return b.deleteFlat(ctx, id)
	}
	l, err := b.lockVolume(ctx, id)
	if errors.Is(err, backends.ErrNotFound) {
		// Perhaps a retry after a crash between the removals and their
		// syncs: they must be durable before this answers.
		return b.syncRemovals()
	}
	if err != nil {
		return err
	}
	defer l.Close()
	m, err := b.readMeta(id)
	if errors.Is(err, backends.ErrNotFound) {
		// An interrupted create or delete: nothing anyone can use.
		if err := b.removeDir(id); err != nil {
			return err
		}
		return b.syncRemovals()
	}
	if err != nil {
		return err
	}
	if err := refuseAttached(m); err != nil {
		return err
	}
	// The name goes first: once it is gone no create can find this id.
	if err := b.releaseName(ctx, m.Name, id); err != nil {
		return err
	}
	fault.Point("file.delete.name-released")
	if err := b.removeDir(id); err != nil {
		return err
	}
	fault.Point("file.delete.removed")
	if err := b.syncRemovals(); err != nil {
		return fmt.Errorf("volume %s: %w", id, err)
	}
	if ce := b.log.Check(zap.InfoLevel, "volume deleted"); ce != nil {
		ce.Write(zap.String("id", id))
	}
	return nil
}

// refuseAttached refuses to delete a volume some node has attached.
func refuseAttached(m *meta) error {
	if len(m.Attachments) == 0 {
		return nil
	}
	nodes := make([]string, 0, len(m.Attachments))
	for _, a := range m.Attachments {
		nodes = append(nodes, a.Node)
	}
	return fmt.Errorf("%w: volume %s is attached to %s", backends.ErrInUse, m.ID, strings.Join(nodes, ", "))
}

// releaseName removes the name's reservation if it still holds id; the
// caller makes the removal durable (syncRemovals).
func (b *Backend) releaseName(ctx context.Context, name, id string) error {
	path := b.namePath(name)
	l, err := b.lockName(ctx, path)
	if err != nil {
		return err
	}
	defer l.Close()
	held, _, err := readName(path)
	if err != nil {
		return err
	}
	if held != id {
		return nil // the name now belongs to another volume, or to none
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// removeDir removes a volume's files and directory; the caller makes the
// removal durable.
func (b *Backend) removeDir(id string) error {
	b.forget(id)
	dir := b.volDir(id)
	// Metadata last, so an interrupted delete still shows the volume.
	for _, f := range []string{"disk.img", "meta.json"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		fault.Point("file.delete.removed-" + f)
	}
	err := os.Remove(dir)
	if errors.Is(err, unix.ENOTEMPTY) {
		// Temporary files of a metadata update that was interrupted.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".meta.json.tmp-") {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		err = os.Remove(dir)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Get implements backends.Backend.
func (b *Backend) Get(ctx context.Context, id string) (*backends.Volume, error) {
	m, err := b.sharedMeta(id)
	if err != nil {
		return nil, err
	}
	return m.volume(), nil
}

// List implements backends.Backend.
func (b *Backend) List(ctx context.Context) ([]*backends.Volume, error) {
	return b.ListAfter(ctx, "", 0)
}

// ListAfter implements backends.Pager: the volumes' files are named by id
// or by a prefix of it, so a page reads only the metadata it returns.
func (b *Backend) ListAfter(ctx context.Context, after string, limit int) ([]*backends.Volume, error) {
	entries, err := b.volumeFiles()
	if err != nil {
		return nil, err
	}
	// A flat key sorts before its own id, so the volume named by after
	// is not returned again.
	i := sort.Search(len(entries), func(i int) bool { return entries[i].name > after })
	out := make([]*backends.Volume, 0, min(len(entries)-i, max(limit, 0)+16))
	for _, e := range entries[i:] {
		if limit > 0 && len(out) == limit {
			break
		}
		m, err := b.metaOf(e)
		if errors.Is(err, backends.ErrNotFound) {
			continue // being created or deleted
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m.volume())
	}
	return out, nil
}

// Capacity implements backends.Backend. Images are sparse, so the free
// space of the pool filesystem overstates what is left: every volume may
// still grow to its full size. What a volume has not allocated yet is
// counted as taken.
func (b *Backend) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	if err := b.refreshCapacity(ctx, 0); err != nil {
		return 0, err
	}
	b.avail.mu.Lock()
	defer b.avail.mu.Unlock()
	return max(0, b.avail.bytes), nil
}

// refreshCapacity rescans the pool when the figure is older than maxAge.
// The scan runs without the lock, so creates are not held up by it; what
// they reserve meanwhile is taken off the scanned figure, which errs on
// the side of offering too little. A figure that is merely stale is
// rescanned in the background, and no more often than every fifty scan
// durations (2% of a CPU): at 10,000 volumes a scan reads 10,000 metadata files, and a
// create that waited for it, once a second, would lose a sixth of its rate
// to it. Only the first figure, and an explicit Capacity call (maxAge 0),
// wait for a scan.
func (b *Backend) refreshCapacity(ctx context.Context, maxAge time.Duration) error {
	b.avail.mu.Lock()
	for b.avail.scanning && b.avail.at.IsZero() {
		// No figure yet: wait for the first scan instead of using none.
		b.avail.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		b.avail.mu.Lock()
	}
	if b.avail.scanning {
		b.avail.mu.Unlock()
		return nil
	}
	if maxAge > 0 && !b.avail.at.IsZero() {
		if time.Since(b.avail.at) <= max(maxAge, 50*b.avail.took) {
			b.avail.mu.Unlock()
			return nil
		}
		b.avail.scanning = true
		before := b.avail.bytes
		b.avail.mu.Unlock()
		go b.finishScan(context.Background(), before)
		return nil
	}
	b.avail.scanning = true
	before := b.avail.bytes
	b.avail.mu.Unlock()
	return b.finishScan(ctx, before)
}

// finishScan scans and installs the figure; before is the figure when the
// scan began, so what was reserved during the scan can be taken off.
func (b *Backend) finishScan(ctx context.Context, before int64) error {
	start := time.Now()
	n, err := b.scanCapacity(ctx)
	b.avail.mu.Lock()
	defer b.avail.mu.Unlock()
	b.avail.scanning = false
	if err != nil {
		return err
	}
	reservedMeanwhile := max(0, before-b.avail.bytes)
	if b.avail.at.IsZero() {
		reservedMeanwhile = 0
	}
	b.avail.bytes, b.avail.at, b.avail.took = n-reservedMeanwhile, time.Now(), time.Since(start)
	return nil
}

// scanCapacity adds up what the pool's volumes are provisioned and have
// not allocated yet. It reads each volume's size from the metadata cache
// without copying it: a scan of 10,000 volumes should not leave 10,000
// volume structures for the collector.
func (b *Backend) scanCapacity(ctx context.Context) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(b.dir, &st); err != nil {
		return 0, fmt.Errorf("%w: statfs %s: %v", backends.ErrUnavailable, b.dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	entries, err := b.volumeFiles()
	if err != nil {
		return 0, err
	}
	var provisioned, unallocated int64
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		m, err := b.metaOf(e)
		if errors.Is(err, backends.ErrNotFound) {
			continue // being created or deleted
		}
		if err != nil {
			return 0, err
		}
		provisioned += m.CapacityBytes
		if m.NoImage {
			unallocated += m.CapacityBytes
			continue
		}
		var is unix.Stat_t
		if err := unix.Stat(b.imagePath(m.ID), &is); err == nil {
			unallocated += max(0, m.CapacityBytes-is.Blocks*512)
		}
	}
	avail := free - unallocated
	if b.capacity > 0 {
		avail = min(avail, b.capacity-provisioned)
	}
	return avail, nil
}

// RegisterNode implements backends.NodeRegistrar.
func (b *Backend) RegisterNode(ctx context.Context, node string) error {
	if !nodeRE.MatchString(node) {
		return fmt.Errorf("%w: node id %q: want letters, digits, '.', '_' and '-', at most 128", backends.ErrInvalid, node)
	}
	data, _ := json.Marshal(map[string]any{"node": node, "registered": time.Now().UTC()})
	return fsutil.WriteFileAtomic(filepath.Join(b.dir, "nodes", node+".json"), data, 0o600)
}

func (b *Backend) nodeKnown(node string) bool {
	if !nodeRE.MatchString(node) {
		return false
	}
	_, err := os.Stat(filepath.Join(b.dir, "nodes", node+".json"))
	return err == nil
}

// Attach implements backends.Backend. For a file pool attaching is only a
// record; the node's Connect makes the device.
func (b *Backend) Attach(ctx context.Context, id string, req backends.AttachRequest) (map[string]string, error) {
	if !b.nodeKnown(req.Node) {
		return nil, fmt.Errorf("%w: node %q has not registered with pool %s (is its node service running with this pool?)",
			backends.ErrNodeNotFound, req.Node, b.dir)
	}
	if req.Mode.ReadOnly() {
		req.ReadOnly = true
	}
	var took []backends.Takeover
	_, err := b.update(ctx, id, func(m *meta) (bool, error) {
		took = nil
		done, err := backends.CheckAttach(m.volume(), req)
		if errors.Is(err, backends.ErrConflict) {
			// Decided here, under the volume's lock, so two takers
			// cannot both win.
			done, took, err = b.takeOver(m, id, req, err)
		}
		if err != nil || (done && len(took) == 0) {
			return false, err
		}
		if !done {
			m.Attachments = append(m.Attachments, attachment{Node: req.Node, ReadOnly: req.ReadOnly, Mode: req.Mode.String(), ByNode: req.ByNode})
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s: %w", id, req.Node, err)
	}
	if len(took) > 0 {
		fault.Point("file.takeover.recorded")
	}
	b.report(took)
	return map[string]string{"readOnly": strconv.FormatBool(req.ReadOnly)}, nil
}

// Detach implements backends.Backend. An attachment whose node still has
// the device connected is refused: in a file pool nothing else stops a
// second node from writing the image while the first still does.
func (b *Backend) Detach(ctx context.Context, id, node string) error {
	var took []backends.Takeover
	_, err := b.update(ctx, id, func(m *meta) (bool, error) {
		took = nil
		i := slices.IndexFunc(m.Attachments, func(a attachment) bool { return a.Node == node })
		if i < 0 {
			return false, nil
		}
		if m.Attachments[i].Connected {
			// A node whose lease expired more than a period ago has
			// fenced itself (or is gone): its connection no longer
			// holds the volume.
			v := b.judge(node)
			if !v.takeable {
				return false, fmt.Errorf("%w: node %s still has volume %s connected; unstage it there first. %s",
					backends.ErrInUse, node, id, b.explain(id, v))
			}
			took = []backends.Takeover{{Backend: b.name, VolumeID: id, From: node, Proof: ProofLeaseExpired, LeaseAge: v.reading.Age()}}
		}
		m.Attachments = slices.Delete(m.Attachments, i, i+1)
		return true, nil
	})
	if err == nil && len(took) > 0 {
		fault.Point("file.takeover.recorded")
		b.report(took)
	}
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s from %s: %w", id, node, err)
	}
	return nil
}

// ForceDetach implements backends.ForceDetacher. Unlike Detach it is not
// idempotent: an operator who names a volume or node that has no
// attachment has made a mistake (a wrong --node, an agent id that
// changed), so the error says what the pool holds instead of reporting
// success.
func (b *Backend) ForceDetach(ctx context.Context, id, node string) error {
	exists := false
	_, err := b.update(ctx, id, func(m *meta) (bool, error) {
		exists = true
		i := slices.IndexFunc(m.Attachments, func(a attachment) bool { return a.Node == node })
		if i < 0 {
			return false, fmt.Errorf("%w: volume %s has no attachment for node %s; it is %s", backends.ErrNotFound, id, node, describeAttachments(m))
		}
		b.log.Warn("FORCED DETACH by operator: the node may still write to the volume if it is alive",
			zap.String("id", id), zap.String("node", node), zap.Bool("wasConnected", m.Attachments[i].Connected))
		m.Attachments = slices.Delete(m.Attachments, i, i+1)
		return true, nil
	})
	if errors.Is(err, backends.ErrNotFound) && !exists {
		return fmt.Errorf("volume %q does not exist in pool %s: %w", id, b.dir, backends.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("force-detach %s from %s: %w", id, node, err)
	}
	return nil
}

// describeAttachments says which nodes hold a volume, for an operator.
func describeAttachments(m *meta) string {
	if len(m.Attachments) == 0 {
		return "attached to no node"
	}
	parts := make([]string, 0, len(m.Attachments))
	for _, a := range m.Attachments {
		p := a.Node
		if a.Connected {
			p += " (connected)"
		}
		parts = append(parts, p)
	}
	return "attached to " + strings.Join(parts, ", ")
}

// setConnected records whether this node has the volume's device in use.
// The caller holds the volume lock.
func (b *Backend) setConnected(id string, on bool) error {
	m, err := b.readMeta(id)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(m.Attachments, func(a attachment) bool { return a.Node == b.node })
	if i < 0 || (m.Attachments[i].Connected == on && !(on && m.NoImage)) {
		return nil
	}
	m.Attachments[i].Connected = on
	if on {
		m.NoImage = false // the caller made it
	}
	if err := b.writeMeta(m); err != nil {
		return err
	}
	fault.Point("file.connected.updated")
	return nil
}

// Expand implements backends.Expander. The image only grows; the node side
// makes the loop device and the filesystem follow.
func (b *Backend) Expand(ctx context.Context, id string, required, limit int64) (int64, error) {
	var size int64
	_, err := b.update(ctx, id, func(m *meta) (bool, error) {
		if required <= m.CapacityBytes {
			size = m.CapacityBytes
			return false, nil
		}
		want, ok := units.RoundUp(required, units.MiB)
		if !ok || (limit > 0 && want > limit) {
			return false, fmt.Errorf("%w: %d bytes rounded to whole MiB exceeds the limit of %d", backends.ErrOutOfRange, required, limit)
		}
		if err := b.checkCapacity(ctx, want-m.CapacityBytes); err != nil {
			return false, err
		}
		if !m.NoImage {
			if err := os.Truncate(b.imagePath(id), want); err != nil {
				return false, fmt.Errorf("grow image: %w", err)
			}
		}
		m.CapacityBytes, size = want, want
		return true, nil
	})
	if err != nil {
		return 0, fmt.Errorf("expand %s: %w", id, err)
	}
	return size, nil
}

// RefreshDevice implements backends.NodeExpander: the loop device re-reads
// the size of its image.
func (b *Backend) RefreshDevice(ctx context.Context, id string, dev backends.Device) error {
	if err := b.Verify(ctx, id, dev); err != nil {
		return err
	}
	return loop.SetCapacity(dev.Path)
}

// MarkFormatted implements backends.Backend.
func (b *Backend) MarkFormatted(ctx context.Context, id, fsType string) error {
	_, err := b.update(ctx, id, func(m *meta) (bool, error) {
		if m.Formatted == fsType {
			return false, nil
		}
		if m.Formatted != "" {
			return false, fmt.Errorf("volume %s is already marked %q; refusing to mark it %q", id, m.Formatted, fsType)
		}
		m.Formatted = fsType
		return true, nil
	})
	return err
}

// Connect implements backends.Backend: it finds or makes the loop device of
// the volume's image on this node and proves, by the backing file's device
// and inode numbers, that the device is this volume.
func (b *Backend) Connect(ctx context.Context, id string, publish map[string]string, readOnly bool) (backends.Device, error) {
	l, err := b.lockVolume(ctx, id)
	if err != nil {
		return backends.Device{}, err
	}
	defer l.Close()
	m, err := b.readMeta(id)
	if err != nil {
		return backends.Device{}, err
	}
	a, ok := m.volume().AttachedTo(b.node)
	if !ok {
		return backends.Device{}, fmt.Errorf("%w: volume %s is not attached to node %s", backends.ErrConflict, id, b.node)
	}
	if err := b.stillFenced(id); err != nil {
		return backends.Device{}, err
	}
	if err := b.alive(); err != nil {
		return backends.Device{}, err
	}
	readOnly = readOnly || a.ReadOnly
	img := b.imagePath(id)
	if m.NoImage {
		if err := b.makeLazyImage(m); err != nil {
			return backends.Device{}, err
		}
	}
	// The record comes first and is durable before any device is made or
	// handed out: Detach and takeover rely on it. Running it beside the
	// device search was tried (issue 17) and saved about 0.15 ms of a
	// 19 ms stage, below the benchmark's noise, so it stays in order.
	if err := b.setConnected(id, true); err != nil {
		// A record left set by a write that failed late (its directory
		// fsync) is harmless: it only makes Detach refuse, and
		// Disconnect (the unstage after a failed stage) clears it.
		return backends.Device{}, fmt.Errorf("volume %s: record connection: %w", id, err)
	}
	found, err := b.findLoop(id, img, readOnly)
	if err != nil {
		return backends.Device{}, b.unrecord(id, a.Connected, fmt.Errorf("find loop device of %s: %w", img, err))
	}
	if found != "" {
		b.rememberLoop(id, found)
		return backends.Device{Path: found}, nil
	}
	info, err := loop.Attach(img, loop.Options{ReadOnly: readOnly, DirectIO: b.directIO})
	if err != nil {
		return backends.Device{}, b.unrecord(id, a.Connected, err)
	}
	fault.Point("file.connect.attached")
	dev, ino, err := loop.FileID(img)
	if err == nil {
		err = loop.Verify(info.Device, dev, ino)
	}
	if err != nil {
		err = fmt.Errorf("volume %s: %w", id, err)
		if derr := loop.Detach(info.Device); derr != nil {
			// The device stays, and so does the record that accounts
			// for it; Disconnect releases both.
			return backends.Device{}, fmt.Errorf("%w (and detaching %s: %v)", err, info.Device, derr)
		}
		return backends.Device{}, b.unrecord(id, a.Connected, err)
	}
	b.log.Info("loop device attached", zap.String("id", id), zap.String("device", info.Device), zap.Bool("readOnly", readOnly))
	b.rememberLoop(id, info.Device)
	// A fence that ran while the device was being attached missed it
	// (it sees only remembered devices): fence it here. The device stays
	// (read-only), and so does the record that accounts for it.
	if err := b.alive(); err != nil {
		loop.SetReadOnly(info.Device)
		return backends.Device{}, err
	}
	return backends.Device{Path: info.Device}, nil
}

// findLoop returns a device of the image that can serve this connection:
// the one this process remembers, else one a scan finds (after a restart,
// or a crash between attaching and answering); "" if there is none.
func (b *Backend) findLoop(id, img string, readOnly bool) (string, error) {
	if dev, ok := b.cachedLoop(id, img, readOnly); ok {
		return dev, nil
	}
	devs, err := loop.Find(img)
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		if d.ReadOnly && !readOnly {
			continue // a reader's device cannot serve a writer
		}
		if !readOnly && fencedDevice(d.Device) {
			continue // nor can a fenced one
		}
		b.log.Debug("reusing loop device", zap.String("id", id), zap.String("device", d.Device))
		return d.Device, nil
	}
	return "", nil
}

// unrecord undoes this Connect's connection record after a failure that
// left no device of its making, so that Detach is not refused on the word
// of a connection that never happened. A record that was set before this
// call (an earlier stage's device may be in use) is kept. If the undo
// fails the record stays, which is harmless: it only makes Detach refuse,
// and Disconnect (the unstage after a failed stage) clears it.
func (b *Backend) unrecord(id string, wasConnected bool, err error) error {
	if wasConnected {
		return err
	}
	if uerr := b.setConnected(id, false); uerr != nil {
		return fmt.Errorf("%w (and clearing the connection record: %v)", err, uerr)
	}
	return err
}

// cachedLoop returns the loop device this process last connected for the
// volume, if the kernel confirms it is still backed by the image (and is
// writable when a writer needs it). A device detached or reused behind our
// back fails the check, and the caller scans.
func (b *Backend) cachedLoop(id, img string, readOnly bool) (string, bool) {
	b.loops.mu.Lock()
	dev, ok := b.loops.m[id]
	b.loops.mu.Unlock()
	if !ok {
		return "", false
	}
	st, err := loop.Status(dev)
	if err != nil || (st.ReadOnly && !readOnly) || (!readOnly && fencedDevice(dev)) {
		return "", false
	}
	fdev, ino, err := loop.FileID(img)
	if err != nil || st.BackingDev != fdev || st.BackingInode != ino {
		return "", false
	}
	return dev, true
}

func (b *Backend) rememberLoop(id, dev string) {
	b.loops.mu.Lock()
	defer b.loops.mu.Unlock()
	if b.loops.m == nil {
		b.loops.m = map[string]string{}
	}
	if dev == "" {
		delete(b.loops.m, id)
	} else {
		b.loops.m[id] = dev
	}
}

// Verify implements backends.Backend: dev must be a loop device backed by
// the volume's image.
func (b *Backend) Verify(ctx context.Context, id string, dev backends.Device) error {
	if !validID(id) {
		return fmt.Errorf("volume %q: %w", id, backends.ErrNotFound)
	}
	devno, ino, err := loop.FileID(b.imagePath(id))
	if err != nil {
		return fmt.Errorf("volume %s: image: %w", id, err)
	}
	return loop.Verify(dev.Path, devno, ino)
}

// Disconnect implements backends.Backend. A device that something still
// holds is not detached: on a shared kernel it may be another node
// service's reader, and otherwise releasing it would let a second writer
// in while this one still writes.
func (b *Backend) Disconnect(ctx context.Context, id string) error {
	l, err := b.lockVolume(ctx, id)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Close()
	img := b.imagePath(id)
	devs, err := loop.Find(img)
	if errors.Is(err, fs.ErrNotExist) {
		b.unfence(id)
		return nil
	}
	if err != nil {
		return err
	}
	m, err := b.readMeta(id)
	if err != nil && !errors.Is(err, backends.ErrNotFound) {
		return err
	}
	for _, d := range devs {
		busy, err := loop.InUseSettled(d.Device)
		if err != nil {
			return err
		}
		if busy {
			if m != nil && sharedByOthers(m, b.node) {
				b.log.Info("loop device left for another node's reader", zap.String("id", id), zap.String("device", d.Device))
				continue
			}
			return fmt.Errorf("%w: %s of volume %s is still open or mounted", backends.ErrInUse, d.Device, id)
		}
		// A fenced device's read-only flag outlives its binding; the
		// device is free now, and its next user (losetup, another
		// program) must not inherit the fence.
		if fencedDevice(d.Device) {
			if err := loop.SetReadOnlyFlag(d.Device, false); err != nil {
				return err
			}
		}
		if err := loop.Detach(d.Device); err != nil {
			return err
		}
		fault.Point("file.disconnect.detached")
		b.log.Info("loop device detached", zap.String("id", id), zap.String("device", d.Device))
	}
	b.rememberLoop(id, "")
	b.unfence(id)
	if m != nil {
		return b.setConnected(id, false)
	}
	return nil
}

// fencedDevice reports a device whose block read-only flag is set: a
// fenced one (or one an operator set read-only), no use to a writer.
func fencedDevice(dev string) bool {
	ro, err := loop.BlockReadOnly(dev)
	return err == nil && ro
}

func sharedByOthers(m *meta, node string) bool {
	for _, a := range m.Attachments {
		if a.Node != node {
			return true
		}
	}
	return false
}

// Reconcile implements backends.Reconciler. After a restart the node keeps
// serving what is staged (the mount table and the loop devices say what
// that is); it releases only loop devices over this pool's images that
// nothing holds and that no node's attachment accounts for: devices of
// volumes that were unstaged, detached or deleted while the plugin was
// down. First, before the node serves, it fences the volumes it still has
// connected that were taken from it meanwhile (fenceLost).
func (b *Backend) Reconcile(ctx context.Context) ([]string, error) {
	done := b.fenceLost()
	devs, err := loop.List()
	if err != nil {
		return done, err
	}
	for _, d := range devs {
		id, deleted, ok := b.imageOf(d.BackingFile)
		if !ok {
			continue
		}
		busy, err := loop.InUse(d.Device)
		if err != nil {
			return done, err
		}
		if busy {
			b.log.Info("reconcile: keeping loop device in use", zap.String("id", id), zap.String("device", d.Device))
			continue
		}
		why := "its volume was deleted"
		if !deleted {
			m, err := b.readMeta(id)
			switch {
			case errors.Is(err, backends.ErrNotFound):
				why = "its volume no longer exists"
			case err != nil:
				return done, err
			case len(m.Attachments) > 0:
				continue // some node's connect may be under way
			default:
				why = "its volume is attached to no node"
			}
		}
		if err := loop.Detach(d.Device); err != nil {
			return done, err
		}
		msg := fmt.Sprintf("released %s of volume %s: %s", d.Device, id, why)
		b.log.Warn("reconcile: "+msg, zap.String("id", id), zap.String("device", d.Device))
		done = append(done, msg)
	}
	return done, nil
}
