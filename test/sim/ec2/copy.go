package ec2sim

import (
	"fmt"
	"strings"
	"time"
)

// copyVolumes implements CopyVolumes: a crash-consistent copy of a volume
// in the source's zone, "creating" and then "available". The copy starts
// empty (contents are not modelled, as for snapshots).
func (s *Server) copyVolumes(p params) (response, *apiError) {
	if s.strict.noCopy {
		return nil, errf("UnsupportedOperation", "The CopyVolumes operation is not supported in this region.")
	}
	if err := required(p, "SourceVolumeId"); err != nil {
		return nil, err
	}
	src, err := s.lookupVolume(p.str("SourceVolumeId"))
	if err != nil {
		return nil, err
	}
	if src.state != "available" && src.state != "in-use" {
		return nil, errf("IncorrectState", "The volume '%s' is '%s'", src.id, src.state)
	}
	token := p.str("ClientToken")
	if len(token) > 64 {
		return nil, errf("InvalidParameterValue", "The client token must be 64 ASCII characters or fewer.")
	}
	tags, err := p.tagSpecs("volume")
	if err != nil {
		return nil, err
	}
	var fp strings.Builder
	for _, k := range []string{"SourceVolumeId", "Size", "VolumeType", "Iops", "Throughput", "Encrypted", "KmsKeyId", "MultiAttachEnabled"} {
		fmt.Fprintf(&fp, "%s=%q;", k, p[k])
	}
	tagMap := map[string]string{}
	for _, t := range tags {
		tagMap[t.key] = t.value
	}
	for _, k := range sortedKeys(tagMap) {
		fmt.Fprintf(&fp, "tag:%q=%q;", k, tagMap[k])
	}
	if ct, ok := s.tokens[token]; token != "" && ok {
		if ct.fingerprint != fp.String() {
			return nil, errf("IdempotentParameterMismatch", "The client token you have provided is associated with a resource that is already deleted or the parameters do not match those of the original request (token %s).", token)
		}
		out := &copyVolumesResp{}
		if v, ok := s.volumes[ct.volumeID]; ok {
			out.Volumes.Items = []xmlVolume{s.xmlVolume(v)}
		} else {
			out.Volumes.Items = []xmlVolume{*ct.tombstone}
		}
		return out, nil
	}
	sp := volumeSpec{volType: p.str("VolumeType"), size: src.sizeGiB}
	if sp.volType == "" {
		sp.volType = "gp2"
	}
	if err := sp.read(p, "The size of the volume copy must be at least the size of the source volume (%dGiB)."); err != nil {
		return nil, err
	}
	encrypted, err := p.bool("Encrypted")
	if err != nil {
		return nil, err
	}
	kms := p.str("KmsKeyId")
	if src.encrypted {
		encrypted = true
		if kms == "" {
			kms = src.kmsKeyID
		}
	}
	v := &volume{
		id: s.newID("vol"), az: src.az, volType: sp.volType, sizeGiB: sp.size, iops: sp.iops,
		throughput: sp.throughput, encrypted: encrypted, kmsKeyID: kms,
		state: "creating", created: time.Now().UTC(), tags: tagMap, visibleAt: s.visibleAt("CreateVolume"),
	}
	s.volumes[v.id] = v
	if token != "" {
		s.tokens[token] = &clientToken{fingerprint: fp.String(), volumeID: v.id, created: time.Now()}
	}
	out := &copyVolumesResp{}
	out.Volumes.Items = []xmlVolume{s.xmlVolume(v)}
	s.after(func() {
		if v.state == "creating" {
			v.state = "available"
		}
	})
	return out, nil
}

type copyVolumesResp struct {
	hdr
	Volumes struct {
		Items []xmlVolume `xml:"item"`
	} `xml:"volumeSet"`
}
