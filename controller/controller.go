// Package controller implements the CSI Controller service: it checks
// requests, picks the backend instance and maps each call onto the backend
// contract. The server runs one call per volume at a time (internal/server),
// so the code here reads as if it ran alone.
package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/capability"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/internal/volid"
)

// MaxNameLen bounds volume names; the CSI spec asks COs to stay within 128
// bytes and csi-sanity sends exactly that.
const MaxNameLen = 128

// Options configure the controller.
type Options struct {
	// AllowOverwrite lets the overwritefs parameter through. Off by
	// default: it allows formatting a device that already holds a
	// filesystem.
	AllowOverwrite bool
	Logger         *zap.Logger
}

// Service is the unlocked controller.
type Service struct {
	csi.UnimplementedControllerServer
	set  *backends.Set
	opt  Options
	log  *zap.Logger
	caps []*csi.ControllerServiceCapability
}

// New returns a controller over the backends in set.
func New(set *backends.Set, opt Options) *Service {
	s := &Service{set: set, opt: opt, log: opt.Logger}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	rpcs := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
	}
	for _, b := range set.All() {
		if _, ok := backends.As[backends.Modifier](b); ok {
			rpcs = append(rpcs, csi.ControllerServiceCapability_RPC_MODIFY_VOLUME)
			break
		}
	}
	for _, b := range set.All() {
		if _, ok := backends.As[backends.Snapshotter](b); ok {
			rpcs = append(rpcs, csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT, csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS, csi.ControllerServiceCapability_RPC_GET_SNAPSHOT)
			break
		}
	}
	for _, b := range set.All() {
		if b.Capabilities().Clone {
			rpcs = append(rpcs, csi.ControllerServiceCapability_RPC_CLONE_VOLUME)
			break
		}
	}
	for _, b := range set.All() {
		if _, ok := backends.As[backends.Expander](b); ok {
			rpcs = append(rpcs, csi.ControllerServiceCapability_RPC_EXPAND_VOLUME)
			break
		}
	}
	for _, b := range set.All() {
		if b.Capabilities().AttachRequired {
			rpcs = append(rpcs,
				csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
				csi.ControllerServiceCapability_RPC_PUBLISH_READONLY)
			break
		}
	}
	for _, r := range rpcs {
		s.caps = append(s.caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: r}},
		})
	}
	return s
}

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

// resolve finds the backend of a volume id given by a caller.
func (s *Service) resolve(id string) (backends.Backend, string, error) {
	return grpcerr.Resolve(s.set, id)
}

func (s *Service) csiVolume(b backends.Backend, v *backends.Volume) *csi.Volume {
	out := &csi.Volume{
		VolumeId:      volid.Join(b.Name(), v.ID),
		CapacityBytes: v.CapacityBytes,
		VolumeContext: volumeContext(v),
	}
	if v.Zone != "" {
		out.AccessibleTopology = []*csi.Topology{{Segments: map[string]string{backends.TopologyZoneKey: v.Zone}}}
	}
	return out
}

// volumeContext is what the node side gets with every stage and publish:
// the creation parameters it needs without asking the backend.
func volumeContext(v *backends.Volume) map[string]string {
	ctx := map[string]string{}
	if fs := params.FSType(v.Parameters); fs != "" {
		ctx[params.FSTypeKey] = fs
	}
	if len(ctx) == 0 {
		return nil
	}
	return ctx
}

// CreateVolume implements csi.ControllerServer.
func (s *Service) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, invalid("name is required")
	}
	if err := volid.CheckString(name, MaxNameLen); err != nil {
		return nil, invalid("name %q: %v", name, err)
	}
	caps, err := capability.ParseAll(req.GetVolumeCapabilities())
	if err != nil {
		return nil, invalid("volume_capabilities: %v", err)
	}
	b, p, err := s.backendFor(req.GetParameters())
	if err != nil {
		return nil, err
	}
	if p, err = withMutable(b, p, req.GetMutableParameters()); err != nil {
		return nil, err
	}
	creq, err := s.createRequest(b, name, req, caps, p)
	if err != nil {
		return nil, err
	}
	if err := s.contentSource(b, req.GetVolumeContentSource(), &creq); err != nil {
		return nil, err
	}
	v, err := b.Create(ctx, creq)
	if err != nil {
		return nil, grpcerr.From(err, "create volume "+strconv.Quote(name))
	}
	out := s.csiVolume(b, v)
	out.ContentSource = req.GetVolumeContentSource()
	return &csi.CreateVolumeResponse{Volume: out}, nil
}

// contentSource resolves what a new volume is copied from. The source must
// live in the same backend instance.
func (s *Service) contentSource(b backends.Backend, src *csi.VolumeContentSource, creq *backends.CreateRequest) error {
	if src == nil {
		return nil
	}
	var id, field string
	switch t := src.GetType().(type) {
	case *csi.VolumeContentSource_Snapshot:
		id, field = t.Snapshot.GetSnapshotId(), "volume_content_source.snapshot.snapshot_id"
	case *csi.VolumeContentSource_Volume:
		id, field = t.Volume.GetVolumeId(), "volume_content_source.volume.volume_id"
	default:
		return invalid("volume_content_source names neither a snapshot nor a volume")
	}
	if !b.Capabilities().Clone {
		return invalid("backend %s cannot create volumes from a snapshot or volume", b.Name())
	}
	if id == "" {
		return invalid("%s is required", field)
	}
	sb, native, err := s.resolve(id)
	if err != nil {
		return status.Errorf(status.Code(err), "%s: %s", field, status.Convert(err).Message())
	}
	if sb != b {
		return invalid("%s: %s lives in backend %s, not %s; copies across backends are not supported", field, id, sb.Name(), b.Name())
	}
	if src.GetSnapshot() != nil {
		creq.SourceSnapshot = native
	} else {
		creq.SourceVolume = native
	}
	return nil
}

// backendFor picks the backend named by the "backend" parameter (the
// default when absent) and checks every other parameter against it.
func (s *Service) backendFor(in map[string]string) (backends.Backend, map[string]string, error) {
	b := s.set.Default()
	if name, ok := in[params.BackendKey]; ok {
		var found bool
		if b, found = s.set.Get(name); !found {
			names := make([]string, 0, len(s.set.All()))
			for _, x := range s.set.All() {
				names = append(names, x.Name())
			}
			return nil, nil, invalid("parameter backend=%q: no such backend; configured: %s", name, strings.Join(names, ", "))
		}
	}
	p, err := params.Check(in, b.Parameters(), s.opt.AllowOverwrite)
	if err != nil {
		return nil, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return b, p, nil
}

func (s *Service) createRequest(b backends.Backend, name string, req *csi.CreateVolumeRequest, caps []capability.Cap, p map[string]string) (backends.CreateRequest, error) {
	bc := b.Capabilities()
	out := backends.CreateRequest{Name: name, Parameters: p}
	fs := params.FSType(p)
	for i, c := range caps {
		if !bc.Supports(c.Mode, c.Block) {
			return out, invalid("volume_capabilities[%d]: backend %s cannot serve %s with %s access", i, b.Name(), c.Mode, accessType(c.Block))
		}
		if i > 0 && c.Block != out.Block {
			return out, invalid("volume_capabilities: a volume is either block or mount, not both")
		}
		out.Block = c.Block
		if !slices.Contains(out.Modes, c.Mode) {
			out.Modes = append(out.Modes, c.Mode)
		}
		if c.FSType != "" {
			if fs != "" && fs != c.FSType {
				return out, invalid("volume_capabilities[%d]: fs_type %q differs from parameter fsType=%q", i, c.FSType, fs)
			}
			fs = c.FSType
		}
	}
	out.FSType = fs
	if fs != "" && params.FSType(p) == "" {
		// Kept with the volume, so that a stage whose capability names no
		// filesystem makes the one the volume was created for.
		p[params.FSTypeKey] = fs
	}
	out.Zones = zones(req.GetAccessibilityRequirements())
	r := req.GetCapacityRange()
	out.RequiredBytes, out.LimitBytes = r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case out.RequiredBytes < 0 || out.LimitBytes < 0:
		return out, invalid("capacity_range: sizes cannot be negative (required %d, limit %d)", out.RequiredBytes, out.LimitBytes)
	case out.LimitBytes > 0 && out.RequiredBytes > out.LimitBytes:
		return out, status.Errorf(codes.OutOfRange, "capacity_range: required_bytes %d is above limit_bytes %d", out.RequiredBytes, out.LimitBytes)
	}
	if out.RequiredBytes == 0 && out.LimitBytes == 0 {
		if gib, ok := p[params.SizeKey]; ok {
			n, _ := strconv.ParseInt(gib, 10, 64) // checked by params.Check
			out.RequiredBytes = n * units.GiB
		}
	}
	return out, nil
}

// zones lists the zones a CO allows for a new volume, preferred ones first,
// without repeats.
func zones(t *csi.TopologyRequirement) []string {
	var out []string
	for _, list := range [][]*csi.Topology{t.GetPreferred(), t.GetRequisite()} {
		for _, top := range list {
			if z := top.GetSegments()[backends.TopologyZoneKey]; z != "" && !slices.Contains(out, z) {
				out = append(out, z)
			}
		}
	}
	return out
}

func accessType(block bool) string {
	if block {
		return "block"
	}
	return "mount"
}

// DeleteVolume implements csi.ControllerServer.
func (s *Service) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	b, native, err := s.resolve(req.GetVolumeId())
	if status.Code(err) == codes.NotFound {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := b.Delete(ctx, native); err != nil {
		return nil, grpcerr.From(err, "delete volume "+req.GetVolumeId())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerPublishVolume implements csi.ControllerServer.
func (s *Service) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	if req.GetNodeId() == "" {
		return nil, invalid("node_id is required")
	}
	c, err := capability.Parse(req.GetVolumeCapability())
	if err != nil {
		return nil, invalid("volume_capability: %v", err)
	}
	b, native, err := s.resolve(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	v, err := b.Get(ctx, native)
	if err != nil {
		return nil, grpcerr.From(err, "publish volume "+req.GetVolumeId())
	}
	if err := checkAccessType(v, c); err != nil {
		return nil, err
	}
	pc, err := b.Attach(ctx, native, backends.AttachRequest{Node: req.GetNodeId(), Mode: c.Mode, ReadOnly: req.GetReadonly()})
	if err != nil {
		return nil, grpcerr.From(err, "publish volume "+req.GetVolumeId())
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: pc}, nil
}

func checkAccessType(v *backends.Volume, c capability.Cap) error {
	if c.Block != v.Block {
		return invalid("volume %s was created for %s access, not %s", v.ID, accessType(v.Block), accessType(c.Block))
	}
	return nil
}

// ControllerUnpublishVolume implements csi.ControllerServer. Without a
// node id it detaches the volume from every node, as the spec asks.
func (s *Service) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	b, native, err := s.resolve(req.GetVolumeId())
	if status.Code(err) == codes.NotFound {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	nodes := []string{req.GetNodeId()}
	if req.GetNodeId() == "" {
		v, err := b.Get(ctx, native)
		if grpcerr.Code(err) == codes.NotFound {
			return &csi.ControllerUnpublishVolumeResponse{}, nil
		}
		if err != nil {
			return nil, grpcerr.From(err, "unpublish volume "+req.GetVolumeId())
		}
		nodes = nodes[:0]
		for _, a := range v.Attachments {
			nodes = append(nodes, a.Node)
		}
	}
	for _, n := range nodes {
		if err := b.Detach(ctx, native, n); err != nil {
			return nil, grpcerr.From(err, "unpublish volume "+req.GetVolumeId())
		}
		s.log.Info("volume detached", zap.String("volume", req.GetVolumeId()), zap.String("node", n))
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

// ValidateVolumeCapabilities implements csi.ControllerServer. Mesos's
// storage provider compares the confirmed fields with what it sent, so
// they are echoed exactly.
func (s *Service) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, invalid("volume_capabilities are required")
	}
	b, native, err := s.resolve(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	v, err := b.Get(ctx, native)
	if err != nil {
		return nil, grpcerr.From(err, "validate volume "+req.GetVolumeId())
	}
	caps, err := capability.ParseAll(req.GetVolumeCapabilities())
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	bc := b.Capabilities()
	for i, c := range caps {
		msg := ""
		switch {
		case c.Block != v.Block:
			msg = fmt.Sprintf("volume_capabilities[%d]: volume is for %s access", i, accessType(v.Block))
		case !bc.Supports(c.Mode, c.Block):
			msg = fmt.Sprintf("volume_capabilities[%d]: backend %s cannot serve %s", i, b.Name(), c.Mode)
		case len(v.Modes) > 0 && !slices.Contains(v.Modes, c.Mode):
			msg = fmt.Sprintf("volume_capabilities[%d]: volume was created for %v, not %s", i, v.Modes, c.Mode)
		case c.FSType != "" && v.Formatted != "" && v.Formatted != backends.FormattedRaw && v.Formatted != c.FSType:
			msg = fmt.Sprintf("volume_capabilities[%d]: volume holds %s, not %s", i, v.Formatted, c.FSType)
		}
		if msg != "" {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: msg}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{
		Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
			VolumeContext:      req.GetVolumeContext(),
			VolumeCapabilities: req.GetVolumeCapabilities(),
			Parameters:         req.GetParameters(),
			MutableParameters:  req.GetMutableParameters(),
		},
	}, nil
}

// ListVolumes implements csi.ControllerServer. Volumes are listed in the
// order of (backend name, native id), and a page token is the id of the
// last volume returned; the next page starts after it. So a token stays
// valid when volumes are added or deleted between pages, even the one it
// names, and no volume present throughout is skipped or repeated. A page
// reads only as many volumes as it returns from backends that can page.
func (s *Service) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, invalid("max_entries cannot be negative")
	}
	token, err := s.decodeToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	afterBackend, afterID, _ := strings.Cut(token, "/")
	n := int(req.GetMaxEntries())
	type entry struct {
		b backends.Backend
		v *backends.Volume
	}
	var page []entry
	list := slices.Clone(s.set.All())
	sort.Slice(list, func(i, j int) bool { return list[i].Name() < list[j].Name() })
	for _, b := range list {
		if token != "" && b.Name() < afterBackend {
			continue
		}
		after := ""
		if b.Name() == afterBackend {
			after = afterID
		}
		want := 0 // all
		if n > 0 {
			want = n + 1 - len(page) // one more than fits tells whether another page follows
		}
		vols, err := listAfter(ctx, b, after, want)
		if err != nil {
			return nil, grpcerr.From(err, "list volumes of "+b.Name())
		}
		for _, v := range vols {
			page = append(page, entry{b, v})
		}
		if n > 0 && len(page) > n {
			break
		}
	}
	resp := &csi.ListVolumesResponse{}
	if n > 0 && len(page) > n {
		page = page[:n]
		last := page[n-1]
		resp.NextToken = encodeToken(volid.Join(last.b.Name(), last.v.ID))
	}
	for _, e := range page {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: s.csiVolume(e.b, e.v),
			Status: &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: nodes(e.v)},
		})
	}
	return resp, nil
}

// listAfter returns up to limit (0: all) volumes of b whose id sorts after
// after, in id order.
func listAfter(ctx context.Context, b backends.Backend, after string, limit int) ([]*backends.Volume, error) {
	if p, ok := backends.As[backends.Pager](b); ok {
		return p.ListAfter(ctx, after, limit)
	}
	vols, err := b.List(ctx)
	if err != nil {
		return nil, err
	}
	i := sort.Search(len(vols), func(i int) bool { return vols[i].ID > after })
	vols = vols[i:]
	if limit > 0 && len(vols) > limit {
		vols = vols[:limit]
	}
	return vols, nil
}

func nodes(v *backends.Volume) []string {
	out := make([]string, 0, len(v.Attachments))
	for _, a := range v.Attachments {
		out = append(out, a.Node)
	}
	return out
}

// ControllerGetVolume implements csi.ControllerServer.
func (s *Service) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	b, native, err := s.resolve(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	v, err := b.Get(ctx, native)
	if err != nil {
		return nil, grpcerr.From(err, "get volume "+req.GetVolumeId())
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: s.csiVolume(b, v),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: nodes(v)},
	}, nil
}

// GetCapacity implements csi.ControllerServer. A capability the backend
// cannot serve has no capacity, as the spec asks.
func (s *Service) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	b, p, err := s.backendFor(req.GetParameters())
	if err != nil {
		return nil, err
	}
	for _, c := range req.GetVolumeCapabilities() {
		pc, err := capability.Parse(c)
		if err != nil {
			return nil, invalid("volume_capabilities: %v", err)
		}
		if !b.Capabilities().Supports(pc.Mode, pc.Block) {
			return &csi.GetCapacityResponse{}, nil
		}
	}
	n, err := b.Capacity(ctx, p)
	if err != nil {
		return nil, grpcerr.From(err, "capacity of "+b.Name())
	}
	return &csi.GetCapacityResponse{AvailableCapacity: n}, nil
}

// ControllerExpandVolume implements csi.ControllerServer. The node side
// always has work to do afterwards (a loop device or a filesystem to grow),
// so node expansion is always requested.
func (s *Service) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id is required")
	}
	r := req.GetCapacityRange()
	if r == nil || r.GetRequiredBytes() <= 0 && r.GetLimitBytes() <= 0 {
		return nil, invalid("capacity_range with a required or limit size is required")
	}
	if r.GetRequiredBytes() < 0 || r.GetLimitBytes() < 0 {
		return nil, invalid("capacity_range: sizes cannot be negative")
	}
	b, native, err := s.resolve(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	x, ok := backends.As[backends.Expander](b)
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "backend %s cannot expand volumes", b.Name())
	}
	want := r.GetRequiredBytes()
	if want == 0 {
		want = r.GetLimitBytes()
	}
	size, err := x.Expand(ctx, native, want, r.GetLimitBytes())
	if err != nil {
		return nil, grpcerr.From(err, "expand volume "+req.GetVolumeId())
	}
	s.log.Info("volume expanded", zap.String("volume", req.GetVolumeId()), zap.Int64("bytes", size))
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: true}, nil
}

// ControllerGetCapabilities implements csi.ControllerServer.
func (s *Service) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: s.caps}, nil
}
