// Package libstoragesim is a stateful libStorage server for tests, written
// from the REST API of REX-Ray 0.11.4's embedded libStorage server and from
// a wire transcript of a real one (shared reference libstorage.md §1, §4,
// §5). It keeps what the real server does, including the three behaviours a
// client must guard against:
//
//   - a create with a name that exists makes a second volume;
//   - a delete removes a volume that is still attached;
//   - a detach from any instance removes every attachment, another
//     instance's included.
//
// Services run their tasks one at a time on a worker of their own; a task
// that outlives the task timeout is answered 408 with the task object, and
// ?async=true answers 202 at once, the result waiting under /tasks/{id}.
// Request bodies are checked the way the server's JSON schema checks them:
// an unknown field is a 500. Attach needs the Libstorage-Instanceid header
// (400 without it). A "vfs"-like service keeps directories under its root
// and does not enforce single attach; a block service hands attach and
// detach to a Devices implementation (LoopDevices) so a node sees a real
// block device behind the link its driver's udev rule would make.
package libstoragesim

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
)

// Storage types of a service's driver.
const (
	TypeBlock  = "block"
	TypeNAS    = "nas"
	TypeObject = "object"
)

// Attachment states relative to the caller (api/types/types_model.go).
const (
	AttachedToMe         = 2
	Available            = 3
	AttachedElsewhere    = 4
	headerInstanceID     = "Libstorage-Instanceid"
	headerLocalDevices   = "Libstorage-Localdevices"
	headerServerName     = "Libstorage-Servername"
	attachmentsRequested = 1
	attachmentsMine      = 2
)

// NextDevice is a driver's device naming rule.
type NextDevice struct {
	Ignore  bool   `json:"ignore"`
	Prefix  string `json:"prefix"`
	Pattern string `json:"pattern"`
}

// Driver is what GET /services/{svc} reports about a service's driver.
type Driver struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	NextDevice NextDevice `json:"nextDevice"`
}

// InstanceID names a client instance to a driver.
type InstanceID struct {
	ID      string `json:"id"`
	Driver  string `json:"driver"`
	Service string `json:"service"`
}

// Attachment is one instance's attachment of a volume.
type Attachment struct {
	VolumeID   string     `json:"volumeID"`
	InstanceID InstanceID `json:"instanceID"`
	DeviceName string     `json:"deviceName"`
	Status     string     `json:"status"`
}

// Volume is the wire form of a volume.
type Volume struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	Type             string            `json:"type,omitempty"`
	Size             int64             `json:"size,omitempty"`
	IOPS             int64             `json:"iops,omitempty"`
	AvailabilityZone string            `json:"availabilityZone,omitempty"`
	Status           string            `json:"status,omitempty"`
	Encrypted        bool              `json:"encrypted,omitempty"`
	AttachmentState  int               `json:"attachmentState,omitempty"`
	Attachments      []Attachment      `json:"attachments,omitempty"`
	Fields           map[string]string `json:"fields,omitempty"`

	encryptionKey string
}

// Snapshot is the wire form of a snapshot.
type Snapshot struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	VolumeID   string `json:"volumeID"`
	VolumeSize int64  `json:"volumeSize"`
	StartTime  int64  `json:"startTime"`
	Status     string `json:"status"`
}

// Task is the wire form of a task.
type Task struct {
	ID           int    `json:"id"`
	QueueTime    int64  `json:"queueTime"`
	StartTime    int64  `json:"startTime,omitempty"`
	CompleteTime int64  `json:"completeTime,omitempty"`
	State        string `json:"state"`
	Result       any    `json:"result,omitempty"`
	Error        any    `json:"error,omitempty"`
}

// Request bodies, as the server's schema knows them.
type (
	createRequest struct {
		Name             string         `json:"name"`
		AvailabilityZone *string        `json:"availabilityZone"`
		Encrypted        *bool          `json:"encrypted"`
		EncryptionKey    *string        `json:"encryptionKey"`
		IOPS             *int64         `json:"iops"`
		Size             *int64         `json:"size"`
		Type             *string        `json:"type"`
		Opts             map[string]any `json:"opts"`
	}
	attachRequest struct {
		NextDeviceName *string        `json:"nextDeviceName"`
		Force          bool           `json:"force"`
		Opts           map[string]any `json:"opts"`
	}
	detachRequest struct {
		Force bool           `json:"force"`
		Opts  map[string]any `json:"opts"`
	}
	copyRequest struct {
		VolumeName string         `json:"volumeName"`
		Opts       map[string]any `json:"opts"`
	}
	snapshotRequest struct {
		SnapshotName string         `json:"snapshotName"`
		Opts         map[string]any `json:"opts"`
	}
)

// ParseInstanceID reads one Libstorage-Instanceid value:
// DRIVER[:SERVICE]=ID[,FIELDS(url-encoded)[,METADATA(base64)]].
func ParseInstanceID(v string) (InstanceID, map[string]string, error) {
	head, rest, ok := strings.Cut(v, "=")
	if !ok {
		return InstanceID{}, nil, fmt.Errorf("instance id %q: want DRIVER[:SERVICE]=ID", v)
	}
	var iid InstanceID
	iid.Driver, iid.Service, _ = strings.Cut(head, ":")
	parts := strings.SplitN(rest, ",", 3)
	iid.ID = parts[0]
	fields := map[string]string{}
	if len(parts) > 1 && parts[1] != "" {
		q, err := url.ParseQuery(parts[1])
		if err != nil {
			return InstanceID{}, nil, fmt.Errorf("instance id fields %q: %w", parts[1], err)
		}
		for k := range q {
			fields[k] = q.Get(k)
		}
	}
	if len(parts) > 2 && parts[2] != "" {
		if _, err := base64.StdEncoding.DecodeString(parts[2]); err != nil {
			return InstanceID{}, nil, fmt.Errorf("instance id metadata: %w", err)
		}
	}
	if iid.Driver == "" {
		return InstanceID{}, nil, fmt.Errorf("instance id %q names no driver", v)
	}
	return iid, fields, nil
}
