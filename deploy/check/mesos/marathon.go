package mesos

import "encoding/json"

// MarathonApp is a Marathon v2 app definition (the fields our examples use
// plus the common ones an operator adds). Unknown fields are refused by the
// strict decoder, so a misspelt key is caught rather than ignored.
type MarathonApp struct {
	ID                    string                     `json:"id"`
	Cmd                   string                     `json:"cmd,omitempty"`
	Args                  []string                   `json:"args,omitempty"`
	Instances             *int                       `json:"instances,omitempty"` // Marathon default 1
	CPUs                  float64                    `json:"cpus,omitempty"`
	Mem                   float64                    `json:"mem,omitempty"`
	Disk                  float64                    `json:"disk,omitempty"`
	GPUs                  int                        `json:"gpus,omitempty"`
	User                  string                     `json:"user,omitempty"`
	Role                  string                     `json:"role,omitempty"`
	Env                   map[string]json.RawMessage `json:"env,omitempty"`
	Labels                map[string]string          `json:"labels,omitempty"`
	Constraints           [][]string                 `json:"constraints,omitempty"`
	AcceptedResourceRoles []string                   `json:"acceptedResourceRoles,omitempty"`
	Container             *MarathonContainer         `json:"container,omitempty"`
	UpgradeStrategy       *UpgradeStrategy           `json:"upgradeStrategy,omitempty"`
	UnreachableStrategy   json.RawMessage            `json:"unreachableStrategy,omitempty"`
	KillSelection         string                     `json:"killSelection,omitempty"`
	HealthChecks          []json.RawMessage          `json:"healthChecks,omitempty"`
	Networks              []json.RawMessage          `json:"networks,omitempty"`
	PortDefinitions       []json.RawMessage          `json:"portDefinitions,omitempty"`
	Fetch                 []json.RawMessage          `json:"fetch,omitempty"`
	BackoffSeconds        *float64                   `json:"backoffSeconds,omitempty"`
	TaskKillGracePeriod   *int                       `json:"taskKillGracePeriodSeconds,omitempty"`
}

// InstanceCount returns instances with Marathon's default of 1.
func (a *MarathonApp) InstanceCount() int {
	if a.Instances == nil {
		return 1
	}
	return *a.Instances
}

// MarathonContainer is the app's container.
type MarathonContainer struct {
	Type         string            `json:"type"` // MESOS|DOCKER
	Docker       *MarathonDocker   `json:"docker,omitempty"`
	Volumes      []MarathonVolume  `json:"volumes,omitempty"`
	PortMappings []json.RawMessage `json:"portMappings,omitempty"`
}

// MarathonDocker is container.docker (an image for the MESOS containerizer
// or the Docker containerizer).
type MarathonDocker struct {
	Image          string `json:"image"`
	ForcePullImage bool   `json:"forcePullImage,omitempty"`
}

// MarathonVolume is one entry of container.volumes. Only external volumes
// are modelled in detail; hostPath and persistent are kept so that mixed
// apps still decode.
type MarathonVolume struct {
	ContainerPath string          `json:"containerPath"`
	Mode          string          `json:"mode"` // RW|RO
	HostPath      string          `json:"hostPath,omitempty"`
	Persistent    json.RawMessage `json:"persistent,omitempty"`
	External      *ExternalVolume `json:"external,omitempty"`
}

// ExternalVolume is volume.external for both providers: `csi`
// (CSIExternalVolumeInfo) and `dvdi` (DVDIExternalVolumeInfo). Size and
// Shared belong to dvdi only; Options is decoded per provider.
type ExternalVolume struct {
	Provider string          `json:"provider"`
	Name     string          `json:"name"`
	Size     *int64          `json:"size,omitempty"`
	Shared   *bool           `json:"shared,omitempty"`
	Options  json.RawMessage `json:"options,omitempty"`
}

// CSIVolumeOptions is CSIExternalVolumeInfoOptions.
type CSIVolumeOptions struct {
	PluginName        string            `json:"pluginName"`
	Capability        *CSICapability    `json:"capability"`
	NodeStageSecret   map[string]string `json:"nodeStageSecret,omitempty"`
	NodePublishSecret map[string]string `json:"nodePublishSecret,omitempty"`
	VolumeContext     map[string]string `json:"volumeContext,omitempty"`
}

// CSICapability is Marathon's CSICapability.
type CSICapability struct {
	AccessType string   `json:"accessType"` // mount|block
	AccessMode string   `json:"accessMode"`
	FSType     string   `json:"fsType,omitempty"`
	MountFlags []string `json:"mountFlags,omitempty"`
}

// UpgradeStrategy is the app's upgradeStrategy.
type UpgradeStrategy struct {
	MinimumHealthCapacity *float64 `json:"minimumHealthCapacity,omitempty"`
	MaximumOverCapacity   *float64 `json:"maximumOverCapacity,omitempty"`
}
