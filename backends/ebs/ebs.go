// Package ebs is the AWS Elastic Block Store backend. The controller side
// talks to the EC2 API (aws-sdk-go-v2); the node side finds the attached
// volume's block device and proves, by its NVMe serial, that it is that
// volume before the node formats or mounts it.
//
// Everything the plugin needs to remember about a volume lives in EC2 tags
// on the volume, so any plugin process (a restarted one, the controller,
// another node) sees the same state:
//
//	CSIVolumeName                  the CSI name (create idempotency)
//	csi-libstorage/cluster         the configured clusterID; volumes without
//	                               it are invisible to this backend
//	csi-libstorage/access          mount or block
//	csi-libstorage/modes           the access modes it was created for
//	csi-libstorage/param/<key>     each creation parameter
//	csi-libstorage/formatted       the mark of invariant 1 (ext4, xfs, raw)
//	csi-libstorage/attachment      "<instance> <mode> <rw|ro> <node|controller> <CO node id>"
//	                               for the current attachment
package ebs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/lock"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// Type is the backend type name used in configuration.
const Type = "ebs"

// Tags the backend keeps on volumes, snapshots and instances.
const (
	TagName         = "CSIVolumeName"
	TagSnapshotName = "CSIVolumeSnapshotName"
	TagPrefix       = "csi-libstorage/"
	TagCluster      = TagPrefix + "cluster"
	TagAccess       = TagPrefix + "access"
	TagModes        = TagPrefix + "modes"
	TagParamPrefix  = TagPrefix + "param/"
	TagFormatted    = TagPrefix + "formatted"
	TagAttachment   = TagPrefix + "attachment"
	// TagSource names the snapshot or volume a volume was created from.
	TagSource = TagPrefix + "source"
	// TagTemporary marks the snapshots a clone takes and deletes again.
	TagTemporary = TagPrefix + "temporary"
	// TagNodeID is put on an instance whose node service runs with a node
	// id that is not the instance id (a Mesos agent id), so the controller
	// can find the instance from the CO's node id.
	TagNodeID = TagPrefix + "node-id"
)

// Publish context keys.
const (
	PublishDevicePath = "devicePath"
	PublishVolumeID   = "volumeID"
)

// Defaults.
const (
	DefaultVolumeType   = "gp3"
	DefaultByIDDir      = "/dev/disk/by-id"
	DefaultDevicePrefix = "/dev/xvd"
	DefaultAttachWait   = 45 * time.Second
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultAttachAbortAfter: the reference driver gives up on an
	// attachment stuck in "attaching" after 90 s, too.
	DefaultAttachAbortAfter = 90 * time.Second
	// DefaultSizeGiB is the size of a volume created without one (raised
	// to the type's minimum).
	DefaultSizeGiB = 1
	// ReportedCapacity is what Capacity returns: EBS has no pool whose
	// free space could be reported (see Capacity).
	ReportedCapacity = 1 << 50 // 1 PiB
)

var (
	volumeIDRE   = regexp.MustCompile(`^vol-[0-9a-f]{8,17}$`)
	instanceIDRE = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	snapshotIDRE = regexp.MustCompile(`^snap-[0-9a-f]{8,17}$`)
	clusterIDRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

// Config is one EBS backend instance as written in the configuration file.
type Config struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Region of the volumes and instances; empty: the SDK's default chain
	// (AWS_REGION, shared config), then the instance's region from IMDS.
	Region string `yaml:"region"`
	// Endpoint overrides the EC2 endpoint (a VPC endpoint, a test server).
	Endpoint string `yaml:"endpoint"`
	// IMDSEndpoint overrides the instance metadata endpoint.
	IMDSEndpoint string `yaml:"imdsEndpoint"`
	// AccessKeyID and SecretAccessKey are static credentials; without them
	// the SDK's default chain is used (environment, shared files, instance
	// profile). They never appear in logs or errors.
	AccessKeyID     string `yaml:"accessKeyID"`
	SecretAccessKey string `yaml:"secretAccessKey"`
	// DefaultType is the volume type when a request names none (gp3).
	DefaultType string `yaml:"defaultType"`
	// Zone is the availability zone for volumes whose request names none;
	// empty: this node's zone (IMDS), else the region's first available
	// zone.
	Zone string `yaml:"zone"`
	// Tags are put on every volume and snapshot.
	Tags map[string]string `yaml:"tags"`
	// KMSKeyID encrypts every volume with this key unless the request
	// says encrypted=false or names its own key.
	KMSKeyID string `yaml:"kmsKeyID"`
	// ClusterID (required) is tagged on every volume; volumes without this
	// cluster's tag are never listed, attached, changed or deleted.
	ClusterID string `yaml:"clusterID"`
	// ByIDDir holds the NVMe by-id links (/dev/disk/by-id).
	ByIDDir string `yaml:"byIDDir"`
	// DevicePrefix is the prefix of device names given to AttachVolume
	// (/dev/xvd, giving /dev/xvdba, /dev/xvdbb, ...).
	DevicePrefix string `yaml:"devicePrefix"`
	// AttachTimeout bounds each wait for an attachment, a detachment or a
	// device to appear ("45s"); PollInterval is the first delay between
	// polls ("500ms"), doubled up to 8 times that.
	AttachTimeout string `yaml:"attachTimeout"`
	PollInterval  string `yaml:"pollInterval"`
	// AttachAbortAfter is how long an attachment may stay "attaching"
	// before it is detached and retried on another device name ("90s").
	AttachAbortAfter string `yaml:"attachAbortAfter"`
	// MaxVolumesPerNode overrides the number of volumes, root included,
	// an instance takes; 0: derived from the instance type.
	MaxVolumesPerNode int `yaml:"maxVolumesPerNode"`
	// CapIOPS lowers IOPS above what a volume's size allows to the most it
	// allows, instead of refusing the request.
	CapIOPS bool `yaml:"capIOPS"`
}

// String hides the credentials, so a logged config never leaks them.
func (c Config) String() string {
	c.AccessKeyID = redact(c.AccessKeyID)
	c.SecretAccessKey = redact(c.SecretAccessKey)
	type plain Config
	return fmt.Sprintf("%+v", plain(c))
}

// GoString implements fmt.GoStringer with the same redaction.
func (c Config) GoString() string { return c.String() }

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// SerialFunc returns the serial number of the block device at devicePath
// (a device node or a link to one). It returns an error wrapping
// ErrNoSerial for a device that has none (a Xen xvd disk).
type SerialFunc func(devicePath string) (string, error)

// ErrNoSerial: the device has no serial number to check.
var ErrNoSerial = errors.New("device has no serial number")

// Options are the process-wide settings a backend needs.
type Options struct {
	// NodeID is the plugin's node id as the CO knows it: an instance id,
	// or anything else (a Mesos agent id), which is then mapped to this
	// instance through IMDS.
	NodeID string
	Logger *zap.Logger
	// Events receives automatic takeovers (and fences); nil reports nothing.
	Events backends.Events
	// Serial reads a device's serial; nil reads the NVMe serial from sysfs.
	Serial SerialFunc
	// DevRoot is prepended to device names (/dev/xvdba) when the node
	// looks for them; tests point it at a scratch directory. Empty: "/".
	DevRoot string
	// SysfsRoot is where sysfs is mounted ("/sys"); tests point it at a
	// scratch tree.
	SysfsRoot string
}

// Backend is one EBS backend instance.
type Backend struct {
	cfg        Config
	name       string
	cluster    string
	volType    string
	byID       string
	prefix     string
	attachWait time.Duration
	abortAfter time.Duration
	poll       time.Duration
	maxVolumes int
	sysfs      string
	node       string
	serial     SerialFunc
	devRoot    string
	log        *zap.Logger
	events     backends.Events
	slow       slowDetaches // takeover.go

	ec2  *ec2.Client
	imds *imds.Client
	// describes batches the describes of single volumes (batch.go).
	describes *describeBatcher

	pageSize int32 // DescribeVolumes MaxResults for List

	locks lock.Keyed // per volume id, per name, per snapshot name
	alloc *allocator

	selfMu   sync.Mutex
	selfInst string
	selfZone string
	// zoneTried: pickZone asked IMDS once; an off-EC2 controller does
	// not wait for it on every create.
	zoneTried bool
	// swept: the temporary clone snapshots were swept once.
	swept     bool
	tempGrace time.Duration
	// noCopy: EC2 refused CopyVolumes here; clones take snapshots.
	noCopy atomic.Bool
}

// New builds a backend from its configuration.
func New(cfg Config, opt Options) (*Backend, error) {
	fail := func(format string, a ...any) (*Backend, error) {
		return nil, fmt.Errorf("ebs backend %q: "+format, append([]any{cfg.Name}, a...)...)
	}
	if !clusterIDRE.MatchString(cfg.ClusterID) {
		return fail("clusterID is required (letters, digits, '.', '_', '-', at most 63): it keeps this cluster's volumes apart from every other user's in the account")
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return fail("accessKeyID and secretAccessKey go together; give both or neither")
	}
	b := &Backend{
		cfg: cfg, name: cfg.Name, cluster: cfg.ClusterID,
		volType: cfg.DefaultType, byID: cfg.ByIDDir, prefix: cfg.DevicePrefix,
		attachWait: DefaultAttachWait, poll: DefaultPollInterval, abortAfter: DefaultAttachAbortAfter,
		maxVolumes: cfg.MaxVolumesPerNode, sysfs: opt.SysfsRoot,
		node: opt.NodeID, serial: opt.Serial, devRoot: opt.DevRoot, log: opt.Logger, events: opt.Events,
		pageSize: 500, tempGrace: DefaultTemporaryGrace,
	}
	if b.sysfs == "" {
		b.sysfs = "/sys"
	}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	b.log = b.log.With(zap.String("backend", cfg.Name))
	if b.volType == "" {
		b.volType = DefaultVolumeType
	}
	if _, ok := volumeTypes[b.volType]; !ok {
		return fail("defaultType %q: use one of %s", b.volType, typeList())
	}
	if b.byID == "" {
		b.byID = DefaultByIDDir
	}
	if b.prefix == "" {
		b.prefix = DefaultDevicePrefix
	}
	if !strings.HasPrefix(b.prefix, "/dev/") || (!strings.HasSuffix(b.prefix, "/xvd") && !strings.HasSuffix(b.prefix, "/sd")) {
		return fail("devicePrefix %q: use /dev/xvd or /dev/sd", b.prefix)
	}
	b.alloc = newAllocator(suffixesFor(b.prefix))
	if cfg.MaxVolumesPerNode < 0 || cfg.MaxVolumesPerNode == 1 || cfg.MaxVolumesPerNode > len(xvdSuffixes)+1 {
		return fail("maxVolumesPerNode %d: want 0 (from the instance type) or 2-%d, the root volume included", cfg.MaxVolumesPerNode, len(xvdSuffixes)+1)
	}
	if err := checkTags(cfg.Tags); err != nil {
		return fail("tags: %v", err)
	}
	var err error
	if cfg.AttachTimeout != "" {
		if b.attachWait, err = time.ParseDuration(cfg.AttachTimeout); err != nil || b.attachWait <= 0 {
			return fail("attachTimeout %q: want a positive duration such as 45s", cfg.AttachTimeout)
		}
	}
	if cfg.PollInterval != "" {
		if b.poll, err = time.ParseDuration(cfg.PollInterval); err != nil || b.poll <= 0 {
			return fail("pollInterval %q: want a positive duration such as 500ms", cfg.PollInterval)
		}
	}
	if cfg.AttachAbortAfter != "" {
		if b.abortAfter, err = time.ParseDuration(cfg.AttachAbortAfter); err != nil || b.abortAfter <= 0 {
			return fail("attachAbortAfter %q: want a positive duration such as 90s", cfg.AttachAbortAfter)
		}
	}
	if b.serial == nil {
		b.serial = b.nvmeSerial
	}

	io := imds.Options{}
	if cfg.IMDSEndpoint != "" {
		io.Endpoint = cfg.IMDSEndpoint
	}
	b.imds = imds.New(io)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lopts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		lopts = append(lopts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		lopts = append(lopts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, lopts...)
	if err != nil {
		return fail("load AWS configuration: %v", err)
	}
	if awsCfg.Region == "" {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		out, rerr := b.imds.GetRegion(rctx, &imds.GetRegionInput{})
		rcancel()
		if rerr != nil {
			return fail("no region: set region in the configuration or AWS_REGION (instance metadata was not reachable either)")
		}
		awsCfg.Region = out.Region
	}
	maxBackoff := 8 * b.poll
	b.ec2 = ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = newPerAPIRetryer(maxBackoff)
	})
	b.describes = newDescribeBatcher(b.describeByFilter)
	return b, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return b.name }

// Capabilities implements backends.Backend. EBS Multi-Attach (io1/io2 only,
// needing a cluster-aware filesystem) is not offered.
func (b *Backend) Capabilities() backends.Capabilities {
	return backends.Capabilities{AttachRequired: true, Block: true, Mount: true, Topology: true, Clone: true}
}

// Parameters implements backends.Backend.
func (b *Backend) Parameters() []string { return slicesClone(ParameterKeys) }

// Probe implements backends.Backend: one cheap, read-only EC2 call.
func (b *Backend) Probe(ctx context.Context) error {
	_, err := b.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		return fmt.Errorf("%w: %v", backends.ErrUnavailable, mapErr(err, "probe EC2"))
	}
	return nil
}

// Capacity implements backends.Backend. EBS has no pool: what limits
// volumes is the account's per-region storage quota, which the EC2 API does
// not report (the Service Quotas API would need another permission and
// still not say what is used). The spec allows any non-negative value;
// 0 would make the Mesos storage resource provider offer no disk at all,
// so a large constant is returned after the parameters are checked, and a
// quota hit surfaces as RESOURCE_EXHAUSTED from CreateVolume.
func (b *Backend) Capacity(ctx context.Context, params map[string]string) (int64, error) {
	if _, err := b.parseSpec(params); err != nil {
		return 0, err
	}
	return ReportedCapacity, nil
}

// transient marks an error a wait callback met that is worth another
// poll: an EC2 call that failed for a reason that passes (throttling, 5xx,
// no answer), after the SDK's own retries.
type transient struct{ err error }

func (t transient) Error() string { return t.err.Error() }
func (t transient) Unwrap() error { return t.err }

// retryable marks err transient when it is ErrUnavailable.
func retryable(err error) error {
	if errors.Is(err, backends.ErrUnavailable) {
		return transient{err}
	}
	return err
}

// wait polls fn until it reports done, fails, or time runs out: timeout,
// or shortly before ctx's deadline, so that the caller can still answer
// UNAVAILABLE ("not yet, retry") rather than the CO timing out. Transient
// errors are polled through. The delay starts at the poll interval and
// doubles up to 8 times it.
func (b *Backend) wait(ctx context.Context, timeout time.Duration, what string, fn func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok {
		if early := d.Add(-min(time.Until(d)/10, time.Second)); early.Before(deadline) {
			deadline = early
		}
	}
	delay := b.poll
	var last error
	for {
		done, err := fn()
		var t transient
		switch {
		case errors.As(err, &t):
			last = t.err
			b.log.Debug("retrying after a transient error", zap.String("waiting for", what), zap.Error(t.err))
		case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
			// A call that began before the early deadline and outlived
			// the caller's (a slow or throttled EC2): still "not yet".
			return fmt.Errorf("%w: %s: still not done when the call's deadline came (%v); retry later", backends.ErrUnavailable, what, err)
		case err != nil || done:
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			if last != nil {
				return fmt.Errorf("%w: %s: still not done; last error: %v; retry later", backends.ErrUnavailable, what, last)
			}
			return fmt.Errorf("%w: %s: still not done; retry later", backends.ErrUnavailable, what)
		}
		tm := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			tm.Stop()
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-tm.C:
		}
		delay = min(2*delay, 8*b.poll)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func gib(n int32) int64 { return int64(n) * units.GiB }
