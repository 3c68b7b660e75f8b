package ec2sim

// XML shapes of EC2 responses. Element names follow the EC2 API reference
// and were checked against the aws-sdk-go-v2 ec2 deserializers.

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xmlTagSet struct {
	Items []xmlTag `xml:"item"`
}

type xmlAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlVolume struct {
	VolumeID         string `xml:"volumeId"`
	Size             int32  `xml:"size"`
	SnapshotID       string `xml:"snapshotId"`
	AvailabilityZone string `xml:"availabilityZone"`
	Status           string `xml:"status"`
	CreateTime       string `xml:"createTime"`
	Attachments      struct {
		Items []xmlAttachment `xml:"item"`
	} `xml:"attachmentSet"`
	Tags               xmlTagSet `xml:"tagSet"`
	VolumeType         string    `xml:"volumeType"`
	Iops               int32     `xml:"iops,omitempty"`
	Throughput         int32     `xml:"throughput,omitempty"`
	Encrypted          bool      `xml:"encrypted"`
	KmsKeyID           string    `xml:"kmsKeyId,omitempty"`
	MultiAttachEnabled bool      `xml:"multiAttachEnabled"`
}

type xmlSnapshot struct {
	SnapshotID  string    `xml:"snapshotId"`
	VolumeID    string    `xml:"volumeId"`
	Status      string    `xml:"status"`
	StartTime   string    `xml:"startTime"`
	Progress    string    `xml:"progress"`
	OwnerID     string    `xml:"ownerId"`
	VolumeSize  int32     `xml:"volumeSize"`
	Description string    `xml:"description"`
	Encrypted   bool      `xml:"encrypted"`
	KmsKeyID    string    `xml:"kmsKeyId,omitempty"`
	Tags        xmlTagSet `xml:"tagSet"`
	// StateMessage says why a snapshot is in error.
	StateMessage string `xml:"statusMessage,omitempty"`
}

type xmlModification struct {
	VolumeID           string `xml:"volumeId"`
	ModificationState  string `xml:"modificationState"`
	TargetSize         int32  `xml:"targetSize"`
	TargetIops         int32  `xml:"targetIops,omitempty"`
	TargetVolumeType   string `xml:"targetVolumeType"`
	TargetThroughput   int32  `xml:"targetThroughput,omitempty"`
	OriginalSize       int32  `xml:"originalSize"`
	OriginalIops       int32  `xml:"originalIops,omitempty"`
	OriginalVolumeType string `xml:"originalVolumeType"`
	OriginalThroughput int32  `xml:"originalThroughput,omitempty"`
	Progress           int64  `xml:"progress"`
	StartTime          string `xml:"startTime"`
	EndTime            string `xml:"endTime,omitempty"`
}

type xmlEbsBlockDevice struct {
	VolumeID            string `xml:"volumeId"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlBlockDeviceMapping struct {
	DeviceName string            `xml:"deviceName"`
	Ebs        xmlEbsBlockDevice `xml:"ebs"`
}

type xmlInstance struct {
	InstanceID    string `xml:"instanceId"`
	ImageID       string `xml:"imageId"`
	InstanceState struct {
		Code int32  `xml:"code"`
		Name string `xml:"name"`
	} `xml:"instanceState"`
	InstanceType string `xml:"instanceType"`
	LaunchTime   string `xml:"launchTime"`
	Placement    struct {
		AvailabilityZone string `xml:"availabilityZone"`
		Tenancy          string `xml:"tenancy"`
	} `xml:"placement"`
	Architecture       string `xml:"architecture"`
	RootDeviceType     string `xml:"rootDeviceType"`
	RootDeviceName     string `xml:"rootDeviceName,omitempty"`
	BlockDeviceMapping struct {
		Items []xmlBlockDeviceMapping `xml:"item"`
	} `xml:"blockDeviceMapping"`
	Tags xmlTagSet `xml:"tagSet"`
}

type xmlReservation struct {
	ReservationID string `xml:"reservationId"`
	OwnerID       string `xml:"ownerId"`
	Instances     struct {
		Items []xmlInstance `xml:"item"`
	} `xml:"instancesSet"`
}

type xmlZone struct {
	ZoneName   string `xml:"zoneName"`
	ZoneState  string `xml:"zoneState"`
	RegionName string `xml:"regionName"`
	ZoneID     string `xml:"zoneId"`
	ZoneType   string `xml:"zoneType"`
	OptIn      string `xml:"optInStatus"`
}

// Response bodies. Each embeds hdr (requestId comes first).

type volumeResp struct {
	hdr
	xmlVolume
}

type attachmentResp struct {
	hdr
	xmlAttachment
}

type returnResp struct {
	hdr
	Return bool `xml:"return"`
}

type describeVolumesResp struct {
	hdr
	Volumes struct {
		Items []xmlVolume `xml:"item"`
	} `xml:"volumeSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type snapshotResp struct {
	hdr
	xmlSnapshot
}

type describeSnapshotsResp struct {
	hdr
	Snapshots struct {
		Items []xmlSnapshot `xml:"item"`
	} `xml:"snapshotSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type modifyVolumeResp struct {
	hdr
	Modification xmlModification `xml:"volumeModification"`
}

type describeModificationsResp struct {
	hdr
	Modifications struct {
		Items []xmlModification `xml:"item"`
	} `xml:"volumeModificationSet"`
}

type describeInstancesResp struct {
	hdr
	Reservations struct {
		Items []xmlReservation `xml:"item"`
	} `xml:"reservationSet"`
}

type describeZonesResp struct {
	hdr
	Zones struct {
		Items []xmlZone `xml:"item"`
	} `xml:"availabilityZoneInfo"`
}
