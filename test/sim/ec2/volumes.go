package ec2sim

import (
	"fmt"
	"strings"
	"time"
)

const gib = int64(1) << 30

type volume struct {
	id, az, volType, kmsKeyID, snapshotID string
	sizeGiB, iops, throughput             int32
	encrypted                             bool
	state                                 string // creating, available, in-use, deleting
	created                               time.Time
	tags                                  map[string]string
	att                                   *attachment
	mod                                   *modification // latest
	visibleAt                             time.Time     // DescribeVolumes shows it from then on
	modStarts                             []time.Time   // within the last 24 h (modify.go)
	stateBeforeError                      string        // see SetVolumeError
}

type attachment struct {
	instanceID, device  string
	state               string // attaching, attached, detaching
	time                time.Time
	deleteOnTermination bool
	scheduled           bool // a transition timer is pending
	deviceUp            bool // Devices.Attach succeeded
	visibleAt           time.Time
}

// visible tells whether describe calls show the attachment yet.
func (a *attachment) visible() bool { return a != nil && !time.Now().Before(a.visibleAt) }

type modification struct {
	state                                 string // modifying, optimizing, completed
	origSize, origIops, origThroughput    int32
	origType                              string
	targetSize, targetIops, targetThrough int32
	targetType                            string
	start, end                            time.Time
}

type clientToken struct {
	fingerprint string
	volumeID    string
	tombstone   *xmlVolume // set when the volume is deleted
	created     time.Time
}

type volumeLimits struct{ minSize, maxSize int32 }

var volumeTypes = map[string]volumeLimits{
	"standard": {1, 1024},
	"gp2":      {1, 16384},
	"gp3":      {1, 65536},
	"io1":      {4, 16384},
	"io2":      {4, 65536},
	"st1":      {125, 16384},
	"sc1":      {125, 16384},
}

// volumeSpec is the validated performance shape of a volume.
type volumeSpec struct {
	volType                   string
	size, iops, throughput    int32
	iopsSet, throughputSet    bool
	prevIops, prevThroughput  int32 // for ModifyVolume: values to keep
	prevType                  string
	keepPrevIops, keepPrevThr bool
}

// resolve validates the spec and fills in defaults.
func (sp *volumeSpec) resolve() *apiError {
	lim, ok := volumeTypes[sp.volType]
	if !ok {
		return errf("InvalidParameterValue", "Value (%s) for parameter volumeType is invalid. Valid values: standard, gp2, gp3, io1, io2, st1, sc1.", sp.volType)
	}
	if sp.size < lim.minSize || sp.size > lim.maxSize {
		return errf("InvalidParameterValue", "Volume of %dGiB is out of range for volume type %s; the size must be between %dGiB and %dGiB.", sp.size, sp.volType, lim.minSize, lim.maxSize)
	}
	switch sp.volType {
	case "gp3":
		if !sp.iopsSet {
			sp.iops = 3000
			if sp.keepPrevIops && sp.prevType == "gp3" {
				sp.iops = sp.prevIops
			}
		}
		if !sp.throughputSet {
			sp.throughput = 125
			if sp.keepPrevThr && sp.prevType == "gp3" {
				sp.throughput = sp.prevThroughput
			}
		}
		if sp.iops < 3000 || sp.iops > 80000 {
			return errf("InvalidParameterValue", "Volume iops of %d is out of range for gp3; must be between 3000 and 80000.", sp.iops)
		}
		if sp.throughput < 125 || sp.throughput > 2000 {
			return errf("InvalidParameterValue", "Throughput of %d MiB/s is out of range for gp3; must be between 125 and 2000.", sp.throughput)
		}
		if sp.iops > 3000 && sp.iops > 500*sp.size {
			return errf("InvalidParameterValue", "Volume iops of %d is too high; maximum is 500 IOPS per GiB for gp3.", sp.iops)
		}
		if sp.throughput > 125 && sp.throughput*4 > sp.iops {
			return errf("InvalidParameterCombination", "Throughput (MiBps) to iops ratio of %.3f is too high; maximum is 0.250 MiBps per iops.", float64(sp.throughput)/float64(sp.iops))
		}
		return nil
	case "io1", "io2":
		if !sp.iopsSet {
			if !sp.keepPrevIops || (sp.prevType != "io1" && sp.prevType != "io2") {
				return errf("MissingParameter", "The request must contain the parameter iops for volume type %s.", sp.volType)
			}
			sp.iops = sp.prevIops
		}
		maxIops := int32(64000)
		if sp.volType == "io2" {
			maxIops = 256000
		}
		if sp.iops < 100 || sp.iops > maxIops {
			return errf("InvalidParameterValue", "Volume iops of %d is out of range for %s; must be between 100 and %d.", sp.iops, sp.volType, maxIops)
		}
		perGiB := int32(50)
		if sp.volType == "io2" {
			perGiB = 1000
		}
		if sp.iops > perGiB*sp.size {
			return errf("InvalidParameterValue", "Iops to volume size ratio of %.1f is too high; maximum is %d.0.", float64(sp.iops)/float64(sp.size), perGiB)
		}
		if sp.throughputSet {
			return errf("InvalidParameterCombination", "The parameter throughput is not supported for %s volumes.", sp.volType)
		}
		sp.throughput = 0
		return nil
	}
	if sp.iopsSet {
		return errf("InvalidParameterCombination", "The parameter iops is not supported for %s volumes.", sp.volType)
	}
	if sp.throughputSet {
		return errf("InvalidParameterCombination", "The parameter throughput is not supported for %s volumes.", sp.volType)
	}
	sp.iops, sp.throughput = 0, 0
	if sp.volType == "gp2" {
		sp.iops = min(max(3*sp.size, 100), 16000)
	}
	return nil
}

func (s *Server) lookupVolume(id string) (*volume, *apiError) {
	if !reVolumeID.MatchString(id) {
		return nil, errf("InvalidVolumeID.Malformed", "Invalid id: %q (expecting \"vol-...\")", id)
	}
	v, ok := s.volumes[id]
	if !ok {
		return nil, errf("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
	}
	return v, nil
}

func (s *Server) xmlVolume(v *volume) xmlVolume {
	x := xmlVolume{
		VolumeID: v.id, Size: v.sizeGiB, SnapshotID: v.snapshotID, AvailabilityZone: v.az,
		Status: v.state, CreateTime: ts(v.created), Tags: xmlTags(v.tags), VolumeType: v.volType,
		Iops: v.iops, Throughput: v.throughput, Encrypted: v.encrypted, KmsKeyID: v.kmsKeyID,
	}
	if a := v.att; a != nil {
		x.Attachments.Items = []xmlAttachment{xmlAttach(v, a)}
	}
	return x
}

func xmlAttach(v *volume, a *attachment) xmlAttachment {
	return xmlAttachment{VolumeID: v.id, InstanceID: a.instanceID, Device: a.device, Status: a.state, AttachTime: ts(a.time), DeleteOnTermination: a.deleteOnTermination}
}

func (s *Server) createVolume(p params) (response, *apiError) {
	token := p.str("ClientToken")
	if len(token) > 64 {
		return nil, errf("InvalidParameterValue", "Value (%s) for parameter clientToken is invalid. The client token must be 64 ASCII characters or fewer.", token)
	}
	tags, err := p.tagSpecs("volume")
	if err != nil {
		return nil, err
	}
	// The fingerprint covers every parameter that shapes the volume;
	// tags are order-insensitive.
	var fp strings.Builder
	for _, k := range []string{"AvailabilityZone", "AvailabilityZoneId", "Size", "VolumeType", "Iops", "Throughput", "Encrypted", "KmsKeyId", "SnapshotId", "MultiAttachEnabled", "OutpostArn"} {
		fmt.Fprintf(&fp, "%s=%q;", k, p[k])
	}
	tagMap := map[string]string{}
	for _, t := range tags {
		tagMap[t.key] = t.value
	}
	for _, k := range sortedKeys(tagMap) {
		fmt.Fprintf(&fp, "tag:%q=%q;", k, tagMap[k])
	}
	if token != "" {
		if ct, ok := s.tokens[token]; ok && s.strict.tokenTTL > 0 && time.Since(ct.created) > s.strict.tokenTTL {
			delete(s.tokens, token) // expired: EC2 forgets tokens after a while
		}
		if ct, ok := s.tokens[token]; ok {
			if ct.fingerprint != fp.String() {
				return nil, errf("IdempotentParameterMismatch", "The client token you have provided is associated with a resource that is already deleted or the parameters do not match those of the original request (token %s).", token)
			}
			if v, ok := s.volumes[ct.volumeID]; ok {
				return &volumeResp{xmlVolume: s.xmlVolume(v)}, nil
			}
			return &volumeResp{xmlVolume: *ct.tombstone}, nil
		}
	}

	az := p.str("AvailabilityZone")
	if az == "" {
		if p.str("AvailabilityZoneId") != "" {
			return nil, errf("InvalidParameterValue", "ec2sim: AvailabilityZoneId is not modeled; use AvailabilityZone")
		}
		return nil, errf("MissingParameter", "The request must contain the parameter availabilityZone")
	}
	if !s.knownZone(az) {
		return nil, errf("InvalidParameterValue", "Invalid availability zone: [%s]", az)
	}
	if on, e := p.bool("MultiAttachEnabled"); e != nil || on {
		if e != nil {
			return nil, e
		}
		return nil, errf("InvalidParameterValue", "ec2sim: multi-attach volumes are not modeled")
	}
	sp := volumeSpec{volType: p.str("VolumeType")}
	if sp.volType == "" {
		sp.volType = "gp2"
	}
	size, sizeSet, err := p.int32("Size")
	if err != nil {
		return nil, err
	}
	sp.size = size
	snapID := p.str("SnapshotId")
	var snap *snapshot
	if snapID != "" {
		if snap, err = s.lookupSnapshot(snapID); err != nil {
			return nil, err
		}
		if snap.state != "completed" {
			return nil, errf("IncorrectState", "Snapshot is in invalid state - %s", snap.state)
		}
		if !sizeSet {
			sp.size = snap.sizeGiB
		} else if size < snap.sizeGiB {
			return nil, errf("InvalidParameterValue", "Volume of %dGiB is too small; minimum is %dGiB.", size, snap.sizeGiB)
		}
	} else if !sizeSet {
		return nil, errf("MissingParameter", "The request must contain the parameter size or snapshotId")
	}
	if sp.iops, sp.iopsSet, err = p.int32("Iops"); err != nil {
		return nil, err
	}
	if sp.throughput, sp.throughputSet, err = p.int32("Throughput"); err != nil {
		return nil, err
	}
	if err := sp.resolve(); err != nil {
		return nil, err
	}
	encrypted, err := p.bool("Encrypted")
	if err != nil {
		return nil, err
	}
	kms := p.str("KmsKeyId")
	if snap != nil && snap.encrypted {
		encrypted = true
		if kms == "" {
			kms = snap.kmsKeyID
		}
	}
	if kms != "" && !encrypted {
		return nil, errf("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	if encrypted && kms == "" {
		kms = fmt.Sprintf("arn:aws:kms:%s:%s:key/00000000-0000-0000-0000-000000000000", s.region, AccountID)
	}

	v := &volume{
		id: s.newID("vol"), az: az, volType: sp.volType, sizeGiB: sp.size, iops: sp.iops,
		throughput: sp.throughput, encrypted: encrypted, kmsKeyID: kms, snapshotID: snapID,
		state: "creating", created: time.Now().UTC(), tags: tagMap, visibleAt: s.visibleAt("CreateVolume"),
	}
	s.volumes[v.id] = v
	if token != "" {
		s.tokens[token] = &clientToken{fingerprint: fp.String(), volumeID: v.id, created: time.Now()}
	}
	out := &volumeResp{xmlVolume: s.xmlVolume(v)}
	failure, fails := takeFailure(&s.strict.failCreate)
	s.after(func() {
		if v.state != "creating" {
			return
		}
		if fails {
			s.logf("ec2sim: volume %s failed to create: %s", v.id, failure)
			s.forget(v)
			return
		}
		v.state = "available"
	})
	return out, nil
}

func (s *Server) deleteVolume(p params) (response, *apiError) {
	v, err := s.lookupVolume(p.str("VolumeId"))
	if err != nil {
		return nil, err
	}
	switch v.state {
	case "in-use":
		return nil, errf("VolumeInUse", "Volume %s is currently attached to %s", v.id, v.att.instanceID)
	case "creating":
		return nil, errf("IncorrectState", "The volume '%s' is 'creating'", v.id)
	case "deleting":
		return &returnResp{Return: true}, nil
	}
	v.state = "deleting"
	s.after(func() {
		if s.volumes[v.id] != v {
			return
		}
		s.forget(v)
		if s.dev != nil {
			if err := s.dev.Delete(v.id); err != nil {
				s.deviceError(fmt.Errorf("Delete(%s): %w", v.id, err))
			}
		}
	})
	return &returnResp{Return: true}, nil
}

// forget removes a volume, keeping a tombstone for its client token.
// Callers hold s.mu.
func (s *Server) forget(v *volume) {
	delete(s.volumes, v.id)
	for _, ct := range s.tokens {
		if ct.volumeID == v.id {
			x := s.xmlVolume(v)
			x.Status = "deleted"
			ct.tombstone = &x
		}
	}
}

// visible tells whether describe calls show the volume yet.
func (v *volume) visible() bool { return !time.Now().Before(v.visibleAt) }

// described is the volume as describe calls show it: without an
// attachment they do not show yet.
func (s *Server) described(v *volume) xmlVolume {
	x := s.xmlVolume(v)
	if v.att != nil && !v.att.visible() {
		x.Attachments.Items = nil
		x.Status = "available"
	}
	return x
}

func (v *volume) fields(name string) ([]string, bool) {
	one := func(s string) ([]string, bool) { return []string{s}, true }
	if vals, ok := tagFields(name, v.tags); ok {
		return vals, true
	}
	switch name {
	case "volume-id":
		return one(v.id)
	case "status":
		return one(v.state)
	case "availability-zone":
		return one(v.az)
	case "volume-type":
		return one(v.volType)
	case "size":
		return one(itoa(v.sizeGiB))
	case "snapshot-id":
		return one(v.snapshotID)
	case "encrypted":
		return one(fmt.Sprint(v.encrypted))
	case "multi-attach-enabled":
		return one("false")
	case "attachment.instance-id", "attachment.device", "attachment.status", "attachment.delete-on-termination":
		if !v.att.visible() {
			return nil, true
		}
		switch name {
		case "attachment.instance-id":
			return one(v.att.instanceID)
		case "attachment.device":
			return one(v.att.device)
		case "attachment.status":
			return one(v.att.state)
		}
		return one(fmt.Sprint(v.att.deleteOnTermination))
	}
	return nil, false
}

func (s *Server) describeVolumes(p params) (response, *apiError) {
	page, next, err := describe(p, "VolumeId", 500, s.volumes,
		func(id string) *apiError {
			v, err := s.lookupVolume(id)
			if err == nil && !v.visible() {
				return errf("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
			}
			return err
		},
		func(v *volume) fieldFunc { return v.fields },
		func(ids []string) []string {
			out := ids[:0:0]
			for _, id := range ids {
				if s.volumes[id].visible() {
					out = append(out, id)
				}
			}
			return out
		})
	if err != nil {
		return nil, err
	}
	out := &describeVolumesResp{NextToken: next}
	for _, id := range page {
		out.Volumes.Items = append(out.Volumes.Items, s.described(s.volumes[id]))
	}
	return out, nil
}

func (m *modification) xml(volID string) xmlModification {
	x := xmlModification{
		VolumeID: volID, ModificationState: m.state,
		TargetSize: m.targetSize, TargetIops: m.targetIops, TargetVolumeType: m.targetType, TargetThroughput: m.targetThrough,
		OriginalSize: m.origSize, OriginalIops: m.origIops, OriginalVolumeType: m.origType, OriginalThroughput: m.origThroughput,
		StartTime: ts(m.start),
	}
	switch m.state {
	case "optimizing":
		x.Progress = 50
	case "completed":
		x.Progress = 100
		x.EndTime = ts(m.end)
	}
	return x
}

func (s *Server) modifyVolume(p params) (response, *apiError) {
	v, err := s.lookupVolume(p.str("VolumeId"))
	if err != nil {
		return nil, err
	}
	if v.state != "available" && v.state != "in-use" {
		return nil, errf("IncorrectState", "The volume '%s' is '%s'", v.id, v.state)
	}
	if v.mod != nil && v.mod.state != "completed" {
		return nil, errf("IncorrectModificationState", "Cannot modify volume %s: a modification is already in the '%s' state.", v.id, v.mod.state)
	}
	if on, e := p.bool("MultiAttachEnabled"); e != nil || on {
		if e != nil {
			return nil, e
		}
		return nil, errf("InvalidParameterValue", "ec2sim: multi-attach volumes are not modeled")
	}
	sp := volumeSpec{volType: v.volType, size: v.sizeGiB, prevIops: v.iops, prevThroughput: v.throughput, prevType: v.volType, keepPrevIops: true, keepPrevThr: true}
	if t := p.str("VolumeType"); t != "" {
		sp.volType = t
	}
	if err := sp.read(p, "New size cannot be smaller than existing size (%dGiB)."); err != nil {
		return nil, err
	}
	if sp.volType == v.volType && sp.size == v.sizeGiB && sp.iops == v.iops && sp.throughput == v.throughput {
		return nil, errf("InvalidParameterValue", "Modification request for volume %s does not change its size, type, iops or throughput.", v.id)
	}
	now := time.Now().UTC()
	if err := s.checkModificationRate(v, now); err != nil {
		return nil, err
	}
	m := &modification{
		state: "modifying", start: now,
		origSize: v.sizeGiB, origIops: v.iops, origThroughput: v.throughput, origType: v.volType,
		targetSize: sp.size, targetIops: sp.iops, targetThrough: sp.throughput, targetType: sp.volType,
	}
	v.mod = m
	s.after(func() {
		if v.mod != m || s.volumes[v.id] != v {
			return
		}
		m.state = "optimizing"
		grew := m.targetSize > v.sizeGiB
		v.sizeGiB, v.iops, v.throughput, v.volType = m.targetSize, m.targetIops, m.targetThrough, m.targetType
		if grew && s.dev != nil {
			if err := s.dev.Resize(v.id, int64(v.sizeGiB)*gib); err != nil {
				s.deviceError(fmt.Errorf("Resize(%s): %w", v.id, err))
			}
		}
		s.after(func() {
			if v.mod == m {
				m.state = "completed"
				m.end = time.Now().UTC()
			}
		})
	})
	return &modifyVolumeResp{Modification: m.xml(v.id)}, nil
}

func (s *Server) describeVolumesModifications(p params) (response, *apiError) {
	want := p.list("VolumeId")
	var vols []*volume
	if len(want) > 0 {
		for _, id := range want {
			v, err := s.lookupVolume(id)
			if err != nil {
				return nil, err
			}
			if v.mod == nil {
				return nil, errf("InvalidVolumeModification.NotFound", "Modification for volume '%s' does not exist.", id)
			}
			vols = append(vols, v)
		}
	} else {
		for _, v := range s.volumes {
			if v.mod != nil {
				vols = append(vols, v)
			}
		}
	}
	fs := p.filters()
	out := &describeModificationsResp{}
	for _, v := range vols {
		m := v.mod
		ok, err := matchFilters(fs, func(name string) ([]string, bool) {
			switch name {
			case "volume-id":
				return []string{v.id}, true
			case "modification-state":
				return []string{m.state}, true
			case "target-size":
				return []string{itoa(m.targetSize)}, true
			case "target-volume-type":
				return []string{m.targetType}, true
			case "original-size":
				return []string{itoa(m.origSize)}, true
			case "original-volume-type":
				return []string{m.origType}, true
			}
			return nil, false
		})
		if err != nil {
			return nil, err
		}
		if ok {
			out.Modifications.Items = append(out.Modifications.Items, m.xml(v.id))
		}
	}
	return out, nil
}

// read takes Size, Iops and Throughput from a request that changes or
// copies a volume of sp.size GiB (a smaller Size is refused with tooSmall,
// which gets the current size) and resolves the result.
func (sp *volumeSpec) read(p params, tooSmall string) *apiError {
	size, sizeSet, err := p.int32("Size")
	if err != nil {
		return err
	}
	if sizeSet {
		if size < sp.size {
			return errf("InvalidParameterValue", tooSmall, sp.size)
		}
		sp.size = size
	}
	if sp.iops, sp.iopsSet, err = p.int32("Iops"); err != nil {
		return err
	}
	if sp.throughput, sp.throughputSet, err = p.int32("Throughput"); err != nil {
		return err
	}
	return sp.resolve()
}
