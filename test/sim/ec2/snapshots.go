package ec2sim

import "time"

type snapshot struct {
	id, volumeID, description, kmsKeyID string
	state                               string // pending, completed, error
	message                             string // why it is in error
	sizeGiB                             int32
	encrypted                           bool
	start                               time.Time
	tags                                map[string]string
}

func (s *Server) lookupSnapshot(id string) (*snapshot, *apiError) {
	if !reSnapshotID.MatchString(id) {
		return nil, errf("InvalidSnapshotID.Malformed", "Invalid id: %q (expecting \"snap-...\")", id)
	}
	sn, ok := s.snapshots[id]
	if !ok {
		return nil, errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	return sn, nil
}

func (sn *snapshot) xml() xmlSnapshot {
	progress := "0%"
	if sn.state == "completed" {
		progress = "100%"
	}
	return xmlSnapshot{
		SnapshotID: sn.id, VolumeID: sn.volumeID, Status: sn.state, StartTime: ts(sn.start),
		Progress: progress, OwnerID: AccountID, VolumeSize: sn.sizeGiB, Description: sn.description,
		Encrypted: sn.encrypted, KmsKeyID: sn.kmsKeyID, Tags: xmlTags(sn.tags), StateMessage: sn.message,
	}
}

func (s *Server) createSnapshot(p params) (response, *apiError) {
	if err := required(p, "VolumeId"); err != nil {
		return nil, err
	}
	v, err := s.lookupVolume(p.str("VolumeId"))
	if err != nil {
		return nil, err
	}
	if v.state != "available" && v.state != "in-use" {
		return nil, errf("IncorrectState", "The volume '%s' is '%s'", v.id, v.state)
	}
	tags, err := p.tagSpecs("snapshot")
	if err != nil {
		return nil, err
	}
	sn := &snapshot{
		id: s.newID("snap"), volumeID: v.id, description: p.str("Description"), kmsKeyID: v.kmsKeyID,
		state: "pending", sizeGiB: v.sizeGiB, encrypted: v.encrypted, start: time.Now().UTC(), tags: map[string]string{},
	}
	for _, t := range tags {
		sn.tags[t.key] = t.value
	}
	s.snapshots[sn.id] = sn
	out := &snapshotResp{xmlSnapshot: sn.xml()}
	failure, fails := takeFailure(&s.strict.failSnap)
	d := s.delay
	if s.strict.snapDelay > 0 {
		d = s.strict.snapDelay
	}
	s.afterDelay(d, func() {
		if sn.state != "pending" {
			return
		}
		sn.state = "completed"
		if fails {
			sn.state, sn.message = "error", failure
		}
	})
	return out, nil
}

func (s *Server) deleteSnapshot(p params) (response, *apiError) {
	if err := required(p, "SnapshotId"); err != nil {
		return nil, err
	}
	sn, err := s.lookupSnapshot(p.str("SnapshotId"))
	if err != nil {
		return nil, err
	}
	for _, v := range s.volumes {
		if v.snapshotID == sn.id && v.state == "creating" {
			return nil, errf("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", sn.id, v.id)
		}
	}
	delete(s.snapshots, sn.id)
	return &returnResp{Return: true}, nil
}

func (sn *snapshot) fields(name string) ([]string, bool) {
	if vals, ok := tagFields(name, sn.tags); ok {
		return vals, true
	}
	switch name {
	case "snapshot-id":
		return []string{sn.id}, true
	case "volume-id":
		return []string{sn.volumeID}, true
	case "status":
		return []string{sn.state}, true
	case "description":
		return []string{sn.description}, true
	case "owner-id":
		return []string{AccountID}, true
	case "volume-size":
		return []string{itoa(sn.sizeGiB)}, true
	case "encrypted":
		if sn.encrypted {
			return []string{"true"}, true
		}
		return []string{"false"}, true
	}
	return nil, false
}

func (s *Server) describeSnapshots(p params) (response, *apiError) {
	page, next, err := describe(p, "SnapshotId", 1000, s.snapshots,
		func(id string) *apiError { _, err := s.lookupSnapshot(id); return err },
		func(sn *snapshot) fieldFunc { return sn.fields },
		func(ids []string) []string {
			for _, o := range p.list("Owner") {
				if o != "self" && o != AccountID {
					return nil // only this account's snapshots exist
				}
			}
			return ids
		})
	if err != nil {
		return nil, err
	}
	out := &describeSnapshotsResp{NextToken: next}
	for _, id := range page {
		out.Snapshots.Items = append(out.Snapshots.Items, s.snapshots[id].xml())
	}
	return out, nil
}
