package ec2sim

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

type instance struct {
	Instance
	launch time.Time
	tags   map[string]string
	state  string // see lifecycle.go; "" is running
}

// reDevice accepts the Linux EBS device names EC2 allows in AttachVolume
// (simplified: /dev/sdX, /dev/xvdX, /dev/xvdXY, /dev/sdXY, optional digits).
var reDevice = regexp.MustCompile(`^/dev/(sd|xvd|hd)[a-z]{1,2}[0-9]{0,2}$`)

func (s *Server) lookupInstance(id string) (*instance, *apiError) {
	if !reInstanceID.MatchString(id) {
		return nil, errf("InvalidInstanceID.Malformed", "Invalid id: %q", id)
	}
	in, ok := s.instances[id]
	if !ok {
		return nil, errf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	return in, nil
}

func required(p params, keys ...string) *apiError {
	for _, k := range keys {
		if p.str(k) == "" {
			return errf("MissingParameter", "The request must contain the parameter %s", lowerFirst(k))
		}
	}
	return nil
}

func (s *Server) attachVolume(p params) (response, *apiError) {
	if err := required(p, "VolumeId", "InstanceId", "Device"); err != nil {
		return nil, err
	}
	v, err := s.lookupVolume(p.str("VolumeId"))
	if err != nil {
		return nil, err
	}
	in, err := s.lookupInstance(p.str("InstanceId"))
	if err != nil {
		return nil, err
	}
	dev := p.str("Device")
	if !reDocumentedDevice.MatchString(dev) {
		return nil, errf("InvalidParameterValue", "Value (%s) for parameter device is invalid. %s is not a valid EBS device name.", dev, dev)
	}
	switch v.state {
	case "in-use":
		return nil, errf("VolumeInUse", "%s is already attached to an instance", v.id)
	case "available":
	default:
		return nil, errf("IncorrectState", "%s is not 'available'.", v.id)
	}
	if st := in.stateOf(); st == StateShuttingDown || st == StateTerminated {
		return nil, errf("IncorrectInstanceState", "The instance '%s' is not in a valid state for this operation (%s).", in.ID, st)
	}
	if v.az != in.AvailabilityZone {
		return nil, errf("InvalidVolume.ZoneMismatch", "The volume '%s' is not in the same availability zone as instance '%s'", v.id, in.ID)
	}
	for _, o := range s.volumes {
		if o.att != nil && o.att.instanceID == in.ID && o.att.device == dev {
			return nil, errf("InvalidParameterValue", "Invalid value '%s' for unixDevice. Attachment point %s is already in use", dev, dev)
		}
	}
	n := 0
	for _, o := range s.volumes {
		if o.att != nil && o.att.instanceID == in.ID {
			n++
		}
	}
	if lim := attachmentLimit(&in.Instance); n >= lim {
		return nil, errf("AttachmentLimitExceeded", "Instance %s (%s) has reached its limit of %d attached volumes.", in.ID, in.InstanceType, lim)
	}
	a := &attachment{instanceID: in.ID, device: dev, state: "attaching", time: time.Now().UTC(), visibleAt: s.visibleAt("AttachVolume")}
	v.att = a
	v.state = "in-use"
	out := &attachmentResp{xmlAttachment: xmlAttach(v, a)}
	if !s.holdAttach {
		s.scheduleAttach(v, a)
	}
	return out, nil
}

// scheduleAttach completes attaching→attached after the delay, making the
// device appear through Devices. Callers hold s.mu.
func (s *Server) scheduleAttach(v *volume, a *attachment) {
	a.scheduled = true
	s.after(func() {
		if v.att != a || a.state != "attaching" {
			return
		}
		a.scheduled = false
		if s.holdAttach || s.strict.stuck[a.instanceID+" "+a.device] {
			return
		}
		if s.dev != nil {
			if err := s.dev.Attach(a.instanceID, v.id, a.device, int64(v.sizeGiB)*gib); err != nil {
				s.deviceError(fmt.Errorf("Attach(%s, %s, %s): %w", a.instanceID, v.id, a.device, err))
				return // stays attaching, like a real stuck attachment
			}
			a.deviceUp = true
		}
		a.state = "attached"
	})
}

func (s *Server) detachVolume(p params) (response, *apiError) {
	if err := required(p, "VolumeId"); err != nil {
		return nil, err
	}
	v, err := s.lookupVolume(p.str("VolumeId"))
	if err != nil {
		return nil, err
	}
	force, err := p.bool("Force")
	if err != nil {
		return nil, err
	}
	if id := p.str("InstanceId"); id != "" {
		if _, err := s.lookupInstance(id); err != nil {
			return nil, err
		}
	}
	a := v.att
	if a == nil {
		return nil, errf("IncorrectState", "Volume '%s' is in the '%s' state.", v.id, v.state)
	}
	if id := p.str("InstanceId"); id != "" && id != a.instanceID {
		return nil, errf("InvalidAttachment.NotFound", "Volume '%s' can not be detached from '%s' because it is not attached to it", v.id, id)
	}
	if d := p.str("Device"); d != "" && d != a.device {
		return nil, errf("InvalidAttachment.NotFound", "Volume '%s' is not attached as '%s'", v.id, d)
	}
	switch a.state {
	case "attaching":
		if !force {
			return nil, errf("IncorrectState", "Volume '%s' is in the 'attaching' state; use Force to detach it.", v.id)
		}
	case "detaching":
		if force && !a.scheduled {
			s.scheduleDetach(v, a, true)
		}
		return &attachmentResp{xmlAttachment: xmlAttach(v, a)}, nil
	}
	a.state = "detaching"
	out := &attachmentResp{xmlAttachment: xmlAttach(v, a)}
	if force || !s.holdDetach {
		s.scheduleDetach(v, a, force)
	}
	return out, nil
}

// scheduleDetach completes detaching→gone after the delay, removing the
// device through Devices. Callers hold s.mu.
func (s *Server) scheduleDetach(v *volume, a *attachment, force bool) {
	a.scheduled = true
	s.after(func() {
		if v.att != a || a.state != "detaching" {
			return
		}
		a.scheduled = false
		if s.holdDetach && !force {
			return
		}
		if a.deviceUp && s.dev != nil {
			if err := s.dev.Detach(a.instanceID, v.id); err != nil {
				s.deviceError(fmt.Errorf("Detach(%s, %s): %w", a.instanceID, v.id, err))
			}
		}
		v.att = nil
		if v.state == "in-use" {
			v.state = "available"
		}
	})
}

func (s *Server) describeInstances(p params) (response, *apiError) {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		ids = s.instOrder
	}
	fs := p.filters()
	out := &describeInstancesResp{}
	seen := map[string]bool{}
	for _, id := range ids {
		in, err := s.lookupInstance(id)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		ok, err := matchFilters(fs, func(name string) ([]string, bool) {
			if vals, ok := tagFields(name, in.tags); ok {
				return vals, true
			}
			if name == "private-dns-name" {
				return []string{PrivateDNSName(s.region, in.ID)}, true
			}
			switch name {
			case "instance-id":
				return []string{in.ID}, true
			case "availability-zone":
				return []string{in.AvailabilityZone}, true
			case "instance-state-name":
				return []string{in.stateOf()}, true
			case "instance-type":
				return []string{in.InstanceType}, true
			}
			return nil, false
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		x := xmlInstance{
			InstanceID: in.ID, ImageID: "ami-0123456789abcdef0", InstanceType: in.InstanceType,
			LaunchTime: ts(in.launch), Architecture: "x86_64", RootDeviceType: "ebs",
			RootDeviceName: in.RootDeviceName, Tags: xmlTags(in.tags),
		}
		x.InstanceState.Code, x.InstanceState.Name = stateCodes[in.stateOf()], in.stateOf()
		x.Placement.AvailabilityZone, x.Placement.Tenancy = in.AvailabilityZone, "default"
		for _, v := range s.volumes {
			if a := v.att; a != nil && a.instanceID == in.ID && a.visible() {
				x.BlockDeviceMapping.Items = append(x.BlockDeviceMapping.Items, xmlBlockDeviceMapping{
					DeviceName: a.device,
					Ebs:        xmlEbsBlockDevice{VolumeID: v.id, Status: a.state, AttachTime: ts(a.time), DeleteOnTermination: a.deleteOnTermination},
				})
			}
		}
		sort.Slice(x.BlockDeviceMapping.Items, func(i, j int) bool {
			return x.BlockDeviceMapping.Items[i].DeviceName < x.BlockDeviceMapping.Items[j].DeviceName
		})
		r := xmlReservation{ReservationID: "r-" + strings.TrimPrefix(in.ID, "i-"), OwnerID: AccountID}
		r.Instances.Items = []xmlInstance{x}
		out.Reservations.Items = append(out.Reservations.Items, r)
	}
	return out, nil
}

// zoneID derives an AZ id like "use1-az1" from the region and zone index.
func (s *Server) zoneID(i int) string {
	parts := strings.Split(s.region, "-")
	abbr := parts[0]
	if len(parts) > 1 {
		for _, part := range parts[1 : len(parts)-1] {
			if part != "" {
				abbr += part[:1]
			}
		}
		abbr += parts[len(parts)-1]
	}
	return fmt.Sprintf("%s-az%d", abbr, i+1)
}

func (s *Server) describeAvailabilityZones(p params) (response, *apiError) {
	names := p.list("ZoneName")
	for _, n := range names {
		if !s.knownZone(n) {
			return nil, errf("InvalidParameterValue", "The zone '%s' does not exist.", n)
		}
	}
	fs := p.filters()
	out := &describeZonesResp{}
	for i, z := range s.zones {
		if len(names) > 0 && !contains(names, z) {
			continue
		}
		zid := s.zoneID(i)
		ok, err := matchFilters(fs, func(name string) ([]string, bool) {
			switch name {
			case "zone-name":
				return []string{z}, true
			case "zone-id":
				return []string{zid}, true
			case "state":
				return []string{"available"}, true
			case "region-name":
				return []string{s.region}, true
			case "zone-type":
				return []string{"availability-zone"}, true
			}
			return nil, false
		})
		if err != nil {
			return nil, err
		}
		if ok {
			out.Zones.Items = append(out.Zones.Items, xmlZone{ZoneName: z, ZoneState: "available", RegionName: s.region, ZoneID: zid, ZoneType: "availability-zone", OptIn: "opt-in-not-required"})
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// resourceTags returns the tag map of a taggable resource id.
func (s *Server) resourceTags(id string) (map[string]string, *apiError) {
	switch {
	case strings.HasPrefix(id, "vol-"):
		v, err := s.lookupVolume(id)
		if err != nil {
			return nil, err
		}
		return v.tags, nil
	case strings.HasPrefix(id, "snap-"):
		sn, err := s.lookupSnapshot(id)
		if err != nil {
			return nil, err
		}
		return sn.tags, nil
	case strings.HasPrefix(id, "i-"):
		in, err := s.lookupInstance(id)
		if err != nil {
			return nil, err
		}
		return in.tags, nil
	}
	return nil, errf("InvalidID", "The ID '%s' is not valid", id)
}

func (s *Server) tagTargets(p params) ([]map[string]string, *apiError) {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	var out []map[string]string
	for _, id := range ids {
		m, err := s.resourceTags(id)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (s *Server) createTags(p params) (response, *apiError) {
	targets, err := s.tagTargets(p)
	if err != nil {
		return nil, err
	}
	tags := p.tags("Tag")
	if len(tags) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter tagSet")
	}
	if err := validateTags(tags); err != nil {
		return nil, err
	}
	for _, m := range targets {
		n := len(m)
		for _, t := range tags {
			if _, ok := m[t.key]; !ok {
				n++
			}
		}
		if n > 50 {
			return nil, errf("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
		}
	}
	for _, m := range targets {
		for _, t := range tags {
			m[t.key] = t.value
		}
	}
	return &returnResp{Return: true}, nil
}

func (s *Server) deleteTags(p params) (response, *apiError) {
	targets, err := s.tagTargets(p)
	if err != nil {
		return nil, err
	}
	tags := p.tags("Tag")
	for _, m := range targets {
		if len(tags) == 0 {
			clear(m)
		}
		for _, t := range tags {
			if cur, ok := m[t.key]; ok && (!t.hasValue || cur == t.value) {
				delete(m, t.key)
			}
		}
	}
	return &returnResp{Return: true}, nil
}
