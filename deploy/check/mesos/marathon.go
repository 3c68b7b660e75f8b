package mesos

import "encoding/json"

// MarathonApp is a Marathon v2 app definition: every property of App in
// Marathon 1.11's app.raml. Unknown fields are refused by the strict
// decoder, so a misspelt key is caught rather than ignored.
type MarathonApp struct {
	ID                    string                     `json:"id"`
	AcceptedResourceRoles []string                   `json:"acceptedResourceRoles,omitempty"`
	Args                  []string                   `json:"args,omitempty"`
	BackoffFactor         *float64                   `json:"backoffFactor,omitempty"`
	BackoffSeconds        *float64                   `json:"backoffSeconds,omitempty"`
	Cmd                   string                     `json:"cmd,omitempty"`
	Constraints           [][]string                 `json:"constraints,omitempty"`
	Container             *MarathonContainer         `json:"container,omitempty"`
	CPUs                  float64                    `json:"cpus,omitempty"`
	Dependencies          []string                   `json:"dependencies,omitempty"`
	Disk                  float64                    `json:"disk,omitempty"`
	Env                   map[string]json.RawMessage `json:"env,omitempty"`
	Executor              string                     `json:"executor,omitempty"`
	ExecutorResources     json.RawMessage            `json:"executorResources,omitempty"`
	Fetch                 []json.RawMessage          `json:"fetch,omitempty"`
	HealthChecks          []json.RawMessage          `json:"healthChecks,omitempty"`
	Check                 json.RawMessage            `json:"check,omitempty"`
	Instances             *int                       `json:"instances,omitempty"` // Marathon default 1
	Labels                map[string]string          `json:"labels,omitempty"`
	MaxLaunchDelaySeconds *float64                   `json:"maxLaunchDelaySeconds,omitempty"`
	Mem                   float64                    `json:"mem,omitempty"`
	GPUs                  int                        `json:"gpus,omitempty"`
	IPAddress             json.RawMessage            `json:"ipAddress,omitempty"`
	Networks              []json.RawMessage          `json:"networks,omitempty"`
	Ports                 []int                      `json:"ports,omitempty"`
	PortDefinitions       []json.RawMessage          `json:"portDefinitions,omitempty"`
	ReadinessChecks       []json.RawMessage          `json:"readinessChecks,omitempty"`
	Residency             json.RawMessage            `json:"residency,omitempty"`
	ResourceLimits        json.RawMessage            `json:"resourceLimits,omitempty"`
	RequirePorts          *bool                      `json:"requirePorts,omitempty"`
	Secrets               map[string]json.RawMessage `json:"secrets,omitempty"`
	TaskKillGracePeriod   *int                       `json:"taskKillGracePeriodSeconds,omitempty"`
	UpgradeStrategy       *UpgradeStrategy           `json:"upgradeStrategy,omitempty"`
	URIs                  []string                   `json:"uris,omitempty"`
	User                  string                     `json:"user,omitempty"`
	Version               string                     `json:"version,omitempty"`
	VersionInfo           json.RawMessage            `json:"versionInfo,omitempty"`
	KillSelection         string                     `json:"killSelection,omitempty"`
	UnreachableStrategy   json.RawMessage            `json:"unreachableStrategy,omitempty"`
	TTY                   *bool                      `json:"tty,omitempty"`
	Role                  string                     `json:"role,omitempty"`
}

// InstanceCount returns instances with Marathon's default of 1.
func (a *MarathonApp) InstanceCount() int {
	if a.Instances == nil {
		return 1
	}
	return *a.Instances
}

// MarathonContainer is the app's container (appContainer.raml Container).
type MarathonContainer struct {
	Type         string            `json:"type"` // MESOS|DOCKER
	Docker       *MarathonDocker   `json:"docker,omitempty"`
	LinuxInfo    json.RawMessage   `json:"linuxInfo,omitempty"`
	Volumes      []MarathonVolume  `json:"volumes,omitempty"`
	PortMappings []json.RawMessage `json:"portMappings,omitempty"`
}

// MarathonDocker is container.docker (DockerContainer: an image for the
// MESOS containerizer or the Docker containerizer).
type MarathonDocker struct {
	Credential     json.RawMessage   `json:"credential,omitempty"`
	PullConfig     json.RawMessage   `json:"pullConfig,omitempty"`
	ForcePullImage bool              `json:"forcePullImage,omitempty"`
	Image          string            `json:"image"`
	Network        string            `json:"network,omitempty"`
	Parameters     []json.RawMessage `json:"parameters,omitempty"`
	PortMappings   []json.RawMessage `json:"portMappings,omitempty"`
	Privileged     *bool             `json:"privileged,omitempty"`
}

// MarathonVolume is one entry of container.volumes: the union of
// AppExternalVolume, AppHostVolume, AppPersistentVolume and AppSecretVolume.
// Only external volumes are modelled in detail.
type MarathonVolume struct {
	ContainerPath string          `json:"containerPath"`
	Mode          string          `json:"mode,omitempty"` // RW|RO; a secret volume has none
	HostPath      string          `json:"hostPath,omitempty"`
	Persistent    json.RawMessage `json:"persistent,omitempty"`
	Secret        string          `json:"secret,omitempty"`
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
