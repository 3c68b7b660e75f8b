package ebs

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// CreateVolume parameters this backend accepts (besides the common ones).
const (
	ParamType       = "type"
	ParamVolumeType = "volumetype" // mesos-module-dvdi / REX-Ray name of "type"
	ParamIOPS       = "iops"
	ParamIOPSPerGB  = "iopsPerGB"
	ParamThroughput = "throughput"
	ParamEncrypted  = "encrypted"
	ParamKMSKeyID   = "kmsKeyId"
	ParamTags       = "tags"
)

// ParameterKeys lists them.
var ParameterKeys = []string{ParamType, ParamVolumeType, ParamIOPS, ParamIOPSPerGB, ParamThroughput, ParamEncrypted, ParamKMSKeyID, ParamTags}

// volumeType holds the limits of one EBS volume type (GiB, IOPS, MiB/s).
type volumeType struct {
	minGiB, maxGiB   int32
	iops             bool // takes provisioned IOPS
	needIOPS         bool // must be given IOPS
	minIOPS, maxIOPS int32
	// iopsPerGiB is the most IOPS each GiB of the volume allows; the
	// minimum IOPS are allowed at any size.
	iopsPerGiB int32
	throughput bool
}

var volumeTypes = map[string]volumeType{
	"gp2":      {minGiB: 1, maxGiB: 16384},
	"gp3":      {minGiB: 1, maxGiB: 65536, iops: true, minIOPS: 3000, maxIOPS: 80000, iopsPerGiB: 500, throughput: true},
	"io1":      {minGiB: 4, maxGiB: 16384, iops: true, needIOPS: true, minIOPS: 100, maxIOPS: 64000, iopsPerGiB: 50},
	"io2":      {minGiB: 4, maxGiB: 65536, iops: true, needIOPS: true, minIOPS: 100, maxIOPS: 256000, iopsPerGiB: 1000},
	"st1":      {minGiB: 125, maxGiB: 16384},
	"sc1":      {minGiB: 125, maxGiB: 16384},
	"standard": {minGiB: 1, maxGiB: 1024},
}

const minThroughput, maxThroughput = 125, 2000

// gp3IOPSPerMiBps: gp3 gives at most 0.25 MiB/s of throughput per
// provisioned IOPS (its baseline 125 MiB/s aside).
const gp3IOPSPerMiBps = 4

func typeList() string {
	ks := slices.Sorted(maps.Keys(volumeTypes))
	return strings.Join(ks, ", ")
}

// spec is a checked set of creation parameters.
type spec struct {
	volType    string
	iops       int32
	iopsPerGB  int32
	throughput int32
	encrypted  bool
	kmsKeyID   string
	tags       map[string]string
}

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{backends.ErrInvalid}, a...)...)
}

func positive(key, v string, max int64) (int32, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n <= 0 || n > max {
		return 0, invalidf("parameter %s=%q: want a whole number between 1 and %d", key, v, max)
	}
	return int32(n), nil
}

// parseSpec checks the parameters that do not depend on the size.
func (b *Backend) parseSpec(p map[string]string) (*spec, error) {
	s := &spec{volType: b.volType}
	t, vt := p[ParamType], p[ParamVolumeType]
	switch {
	case t != "" && vt != "" && t != vt:
		return nil, invalidf("parameters type=%q and volumetype=%q disagree; give one", t, vt)
	case t != "":
		s.volType = t
	case vt != "":
		s.volType = vt
	}
	ty, ok := volumeTypes[s.volType]
	if !ok {
		return nil, invalidf("volume type %q: use one of %s", s.volType, typeList())
	}
	var err error
	if v, ok := p[ParamIOPS]; ok {
		if s.iops, err = positive(ParamIOPS, v, 1<<20); err != nil {
			return nil, err
		}
	}
	if v, ok := p[ParamIOPSPerGB]; ok {
		if s.iopsPerGB, err = positive(ParamIOPSPerGB, v, 1000); err != nil {
			return nil, err
		}
	}
	if v, ok := p[ParamThroughput]; ok {
		if s.throughput, err = positive(ParamThroughput, v, 1<<20); err != nil {
			return nil, err
		}
	}
	switch {
	case s.iops > 0 && s.iopsPerGB > 0:
		return nil, invalidf("give iops or iopsPerGB, not both")
	case (s.iops > 0 || s.iopsPerGB > 0) && !ty.iops:
		return nil, invalidf("volume type %s has no provisioned IOPS; drop iops/iopsPerGB or use gp3, io1 or io2", s.volType)
	case ty.needIOPS && s.iops == 0 && s.iopsPerGB == 0:
		return nil, invalidf("volume type %s needs provisioned IOPS: add iops (%d-%d) or iopsPerGB", s.volType, ty.minIOPS, ty.maxIOPS)
	case s.iops > 0 && (s.iops < ty.minIOPS || s.iops > ty.maxIOPS):
		return nil, invalidf("iops=%d: volume type %s takes %d-%d", s.iops, s.volType, ty.minIOPS, ty.maxIOPS)
	case s.throughput > 0 && !ty.throughput:
		return nil, invalidf("throughput applies to gp3 only, not %s; drop it or use type=gp3", s.volType)
	case s.throughput > 0 && (s.throughput < minThroughput || s.throughput > maxThroughput):
		return nil, invalidf("throughput=%d: gp3 takes %d-%d MiB/s", s.throughput, minThroughput, maxThroughput)
	}

	s.kmsKeyID = b.cfg.KMSKeyID
	s.encrypted = s.kmsKeyID != ""
	if v, ok := p[ParamEncrypted]; ok {
		if s.encrypted, err = strconv.ParseBool(v); err != nil {
			return nil, invalidf("parameter encrypted=%q: want true or false", v)
		}
		if !s.encrypted {
			s.kmsKeyID = ""
		}
	}
	if v, ok := p[ParamKMSKeyID]; ok {
		if v == "" {
			return nil, invalidf("parameter kmsKeyId is empty")
		}
		if !s.encrypted && p[ParamEncrypted] != "" {
			return nil, invalidf("kmsKeyId=%q with encrypted=false: a key is only used for encrypted volumes", v)
		}
		s.kmsKeyID, s.encrypted = v, true
	}
	if v, ok := p[ParamTags]; ok {
		if s.tags, err = parseTags(v); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// sizeGiB picks the size in GiB for a request: the default when none is
// given, raised to the type's minimum, never beyond its maximum or the
// caller's limit.
func (s *spec) sizeGiB(required, limit int64) (int32, error) {
	ty := volumeTypes[s.volType]
	const g = 1 << 30
	n := int64(DefaultSizeGiB)
	if required > 0 {
		n = (required + g - 1) / g
	}
	if n < int64(ty.minGiB) {
		n = int64(ty.minGiB)
	}
	if n > int64(ty.maxGiB) {
		return 0, fmt.Errorf("%w: %d GiB requested; %s volumes hold at most %d GiB", backends.ErrOutOfRange, n, s.volType, ty.maxGiB)
	}
	if limit > 0 && n*g > limit {
		return 0, fmt.Errorf("%w: the smallest %s volume for the request is %d GiB (EBS sizes are whole GiB, %s minimum %d GiB), above the limit of %d bytes",
			backends.ErrOutOfRange, s.volType, n, s.volType, ty.minGiB, limit)
	}
	return int32(n), nil
}

// iopsFor returns the IOPS to ask for at size GiB.
func (s *spec) iopsFor(size int32) int32 {
	if s.iopsPerGB == 0 {
		return s.iops
	}
	ty := volumeTypes[s.volType]
	n := int64(s.iopsPerGB) * int64(size)
	return int32(min(max(n, int64(ty.minIOPS)), int64(ty.maxIOPS)))
}

// performance returns the IOPS and throughput to ask for at size GiB,
// checked against the ratios EC2 enforces: IOPS per GiB for each type and
// gp3's throughput per IOPS. IOPS above what the size allows are lowered to
// that when capIOPS is set, and refused otherwise.
func (s *spec) performance(size int32, capIOPS bool) (iops, throughput int32, err error) {
	ty := volumeTypes[s.volType]
	iops, throughput = s.iopsFor(size), s.throughput
	if iops > 0 && ty.iopsPerGiB > 0 {
		most := min(max(int64(ty.iopsPerGiB)*int64(size), int64(ty.minIOPS)), int64(ty.maxIOPS))
		if int64(iops) > most {
			if !capIOPS {
				return 0, 0, invalidf("iops=%d: a %d GiB %s volume takes at most %d IOPS (%d per GiB); ask for at least %d GiB, fewer IOPS, or set capIOPS in the backend configuration to get %d",
					iops, size, s.volType, most, ty.iopsPerGiB, (int64(iops)+int64(ty.iopsPerGiB)-1)/int64(ty.iopsPerGiB), most)
			}
			iops = int32(most)
		}
	}
	if throughput > minThroughput && s.volType == "gp3" {
		base := iops
		if base == 0 {
			base = ty.minIOPS
		}
		if throughput*gp3IOPSPerMiBps > base {
			return 0, 0, invalidf("throughput=%d: gp3 gives at most 1 MiB/s per %d IOPS, so %d MiB/s needs iops=%d or more (the volume has %d)",
				throughput, gp3IOPSPerMiBps, throughput, throughput*gp3IOPSPerMiBps, base)
		}
	}
	return iops, throughput, nil
}

// encryptedFlag and kmsKey are the encryption fields of a create or copy:
// set only for an encrypted volume.
func (s *spec) encryptedFlag() *bool {
	if !s.encrypted {
		return nil
	}
	return aws.Bool(true)
}

func (s *spec) kmsKey() *string {
	if !s.encrypted || s.kmsKeyID == "" {
		return nil
	}
	return aws.String(s.kmsKeyID)
}

// positiveOrNil leaves a zero IOPS or throughput out of a request.
func positiveOrNil(n int32) *int32 {
	if n <= 0 {
		return nil
	}
	return aws.Int32(n)
}

// parseTags reads "k1=v1,k2=v2".
func parseTags(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, invalidf("parameter tags: %q is not key=value (write tags as k1=v1,k2=v2)", kv)
		}
		out[k] = strings.TrimSpace(val)
	}
	if err := checkTags(out); err != nil {
		return nil, invalidf("parameter tags: %v", err)
	}
	return out, nil
}

// checkTags refuses tags EC2 would refuse and tags this backend owns.
func checkTags(tags map[string]string) error {
	for k, v := range tags {
		switch {
		case k == "" || len(k) > 128:
			return fmt.Errorf("tag key %q: 1 to 128 characters", k)
		case len(v) > 256:
			return fmt.Errorf("tag %q: values hold at most 256 characters", k)
		case strings.HasPrefix(k, TagPrefix), k == TagName, k == TagSnapshotName:
			return fmt.Errorf("tag %q is reserved for the plugin's own bookkeeping", k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("tag %q: the aws: prefix is reserved by AWS", k)
		}
	}
	if len(tags) > 30 {
		return fmt.Errorf("%d tags: EC2 allows 50 per volume and the plugin needs up to 20", len(tags))
	}
	return nil
}
