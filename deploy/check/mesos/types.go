// Package mesos mirrors the JSON files an operator gives Apache Mesos
// and Marathon to run csi-libstorage, and checks them the way Mesos and
// Marathon do (plus a few rules of our own, marked as such), so that a broken
// file fails in CI instead of on an agent. Field names follow the Mesos
// protobuf JSON mapping (snake_case, enums as strings) and Marathon's RAML
// (camelCase) exactly; see /work/shared/reference/mesos.md for the sources.
//
// The types carry every field of the real schema (mesos.proto of Mesos
// 1.11, Marathon 1.11's RAML), so that strict decoding refuses only
// misspellings. Sub-messages the checks never look into are kept as raw
// JSON.
package mesos

import "encoding/json"

// PluginType is our plugin's name: CSI GetPluginInfo, the Mesos plugin
// `type`, Marathon's `pluginName` and Mesos's `plugin_name` all use it.
const PluginType = "csi.libstorage.io"

// BinaryPath is where the operator guide installs the plugin.
const BinaryPath = "/usr/local/bin/csi-libstorage"

// SLRPType is the only resource provider type the Mesos agent launches.
const SLRPType = "org.apache.mesos.rp.local.storage"

// Service names of CSIPluginContainerInfo.Service.
const (
	ControllerService = "CONTROLLER_SERVICE"
	NodeService       = "NODE_SERVICE"
)

// The five access modes of CSI 1.1.0, the only ones Mesos knows.
const (
	SingleNodeWriter      = "SINGLE_NODE_WRITER"
	SingleNodeReaderOnly  = "SINGLE_NODE_READER_ONLY"
	MultiNodeReaderOnly   = "MULTI_NODE_READER_ONLY"
	MultiNodeSingleWriter = "MULTI_NODE_SINGLE_WRITER"
	MultiNodeMultiWriter  = "MULTI_NODE_MULTI_WRITER"
)

// AccessModes is the CSI 1.1.0 set, in spec order.
var AccessModes = []string{SingleNodeWriter, SingleNodeReaderOnly, MultiNodeReaderOnly, MultiNodeSingleWriter, MultiNodeMultiWriter}

// CSIPluginInfo is mesos.proto CSIPluginInfo: one file in
// --csi_plugin_config_dir, or storage.plugin of an SLRP.
type CSIPluginInfo struct {
	Type             string                   `json:"type"`
	Name             string                   `json:"name,omitempty"` // Mesos default "default"
	Containers       []CSIPluginContainerInfo `json:"containers,omitempty"`
	Endpoints        []CSIPluginEndpoint      `json:"endpoints,omitempty"`
	TargetPathRoot   string                   `json:"target_path_root,omitempty"`
	TargetPathExists *bool                    `json:"target_path_exists,omitempty"`
}

// CSIPluginContainerInfo is a plugin container Mesos launches.
type CSIPluginContainerInfo struct {
	Services  []string       `json:"services"`
	Command   *CommandInfo   `json:"command,omitempty"`
	Resources []Resource     `json:"resources,omitempty"`
	Container *ContainerInfo `json:"container,omitempty"`
}

// CSIPluginEndpoint is a plugin the operator runs ("unmanaged").
type CSIPluginEndpoint struct {
	CSIService string `json:"csi_service"`
	Endpoint   string `json:"endpoint"`
}

// CommandInfo is mesos.proto CommandInfo (the fields an operator uses).
type CommandInfo struct {
	URIs        []CommandURI `json:"uris,omitempty"`
	Environment *Environment `json:"environment,omitempty"`
	Shell       *bool        `json:"shell,omitempty"` // Mesos default true
	Value       string       `json:"value,omitempty"`
	Arguments   []string     `json:"arguments,omitempty"`
	User        string       `json:"user,omitempty"`
}

// IsShell reports the effective value of shell (Mesos default: true).
func (c *CommandInfo) IsShell() bool { return c.Shell == nil || *c.Shell }

// CommandURI is CommandInfo.URI.
type CommandURI struct {
	Value      string `json:"value"`
	Executable *bool  `json:"executable,omitempty"`
	Extract    *bool  `json:"extract,omitempty"`
	Cache      *bool  `json:"cache,omitempty"`
	OutputFile string `json:"output_file,omitempty"`
}

// Environment is mesos.proto Environment.
type Environment struct {
	Variables []EnvironmentVariable `json:"variables"`
}

// EnvironmentVariable is Environment.Variable.
type EnvironmentVariable struct {
	Name   string          `json:"name"`
	Type   string          `json:"type,omitempty"` // UNKNOWN|VALUE|SECRET
	Value  string          `json:"value,omitempty"`
	Secret json.RawMessage `json:"secret,omitempty"`
}

// Resource is mesos.proto Resource. The checks look at scalars only.
type Resource struct {
	ProviderID     json.RawMessage   `json:"provider_id,omitempty"`
	Name           string            `json:"name"`
	Type           string            `json:"type"` // SCALAR|RANGES|SET|TEXT
	Scalar         *Scalar           `json:"scalar,omitempty"`
	Ranges         json.RawMessage   `json:"ranges,omitempty"`
	Set            json.RawMessage   `json:"set,omitempty"`
	Role           string            `json:"role,omitempty"` // deprecated
	AllocationInfo json.RawMessage   `json:"allocation_info,omitempty"`
	Reservation    *ReservationInfo  `json:"reservation,omitempty"`
	Reservations   []ReservationInfo `json:"reservations,omitempty"`
	Disk           json.RawMessage   `json:"disk,omitempty"`
	Revocable      json.RawMessage   `json:"revocable,omitempty"`
	Shared         json.RawMessage   `json:"shared,omitempty"`
}

// Scalar is Value.Scalar.
type Scalar struct {
	Value float64 `json:"value"`
}

// ContainerInfo is mesos.proto ContainerInfo for a plugin container that
// runs from an image.
type ContainerInfo struct {
	Type         string          `json:"type"` // MESOS|DOCKER
	Volumes      json.RawMessage `json:"volumes,omitempty"`
	Hostname     string          `json:"hostname,omitempty"`
	Docker       json.RawMessage `json:"docker,omitempty"`
	Mesos        *MesosInfo      `json:"mesos,omitempty"`
	NetworkInfos json.RawMessage `json:"network_infos,omitempty"`
	LinuxInfo    json.RawMessage `json:"linux_info,omitempty"`
	RlimitInfo   json.RawMessage `json:"rlimit_info,omitempty"`
	TTYInfo      json.RawMessage `json:"tty_info,omitempty"`
}

// MesosInfo is ContainerInfo.MesosInfo.
type MesosInfo struct {
	Image *Image `json:"image,omitempty"`
}

// Image is mesos.proto Image.
type Image struct {
	Type   string          `json:"type"` // DOCKER|APPC
	Appc   json.RawMessage `json:"appc,omitempty"`
	Docker *DockerImage    `json:"docker,omitempty"`
	Cached *bool           `json:"cached,omitempty"`
}

// DockerImage is Image.Docker.
type DockerImage struct {
	Name       string          `json:"name"`
	Credential json.RawMessage `json:"credential,omitempty"`
	Config     json.RawMessage `json:"config,omitempty"`
}

// ResourceProviderInfo is mesos.proto ResourceProviderInfo: one file in
// --resource_provider_config_dir.
type ResourceProviderInfo struct {
	// ID must not be set; it is decoded only so that Validate can refuse it.
	ID                  json.RawMessage   `json:"id,omitempty"`
	Attributes          []Attribute       `json:"attributes,omitempty"`
	Type                string            `json:"type"`
	Name                string            `json:"name"`
	DefaultReservations []ReservationInfo `json:"default_reservations,omitempty"`
	Storage             *StorageInfo      `json:"storage,omitempty"`
}

// Attribute is mesos.proto Attribute: a name and one typed value.
type Attribute struct {
	Name   string          `json:"name"`
	Type   string          `json:"type"` // SCALAR|RANGES|SET|TEXT
	Scalar *Scalar         `json:"scalar,omitempty"`
	Ranges json.RawMessage `json:"ranges,omitempty"`
	Set    json.RawMessage `json:"set,omitempty"`
	Text   json.RawMessage `json:"text,omitempty"`
}

// StorageInfo is ResourceProviderInfo.Storage.
type StorageInfo struct {
	Plugin *CSIPluginInfo `json:"plugin"`
	// ReconciliationIntervalSeconds is a double; a non-positive value turns
	// reconciliation after start-up off (mesos.proto).
	ReconciliationIntervalSeconds *float64 `json:"reconciliation_interval_seconds,omitempty"`
}

// ReservationInfo is Resource.ReservationInfo.
type ReservationInfo struct {
	Type      string          `json:"type"` // STATIC|DYNAMIC
	Role      string          `json:"role"`
	Principal string          `json:"principal,omitempty"`
	Labels    json.RawMessage `json:"labels,omitempty"`
}

// DiskProfileMapping is disk_profile.proto DiskProfileMapping, the file the
// URI disk profile adaptor fetches.
type DiskProfileMapping struct {
	ProfileMatrix map[string]CSIManifest `json:"profile_matrix"`
}

// CSIManifest is DiskProfileMapping.CSIManifest: one profile.
type CSIManifest struct {
	ResourceProviderSelector *ResourceProviderSelector `json:"resource_provider_selector,omitempty"`
	CSIPluginTypeSelector    *CSIPluginTypeSelector    `json:"csi_plugin_type_selector,omitempty"`
	// VolumeCapabilities is a single capability despite the plural name.
	VolumeCapabilities *VolumeCapability `json:"volume_capabilities"`
	CreateParameters   map[string]string `json:"create_parameters,omitempty"`
}

// ResourceProviderSelector selects resource providers by type and name.
type ResourceProviderSelector struct {
	ResourceProviders []ResourceProviderRef `json:"resource_providers"`
}

// ResourceProviderRef is one (type, name) pair of a selector.
type ResourceProviderRef struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// CSIPluginTypeSelector selects every SLRP whose plugin has this type.
type CSIPluginTypeSelector struct {
	PluginType string `json:"plugin_type"`
}

// VolumeCapability is csi.v1 VolumeCapability in protobuf JSON.
type VolumeCapability struct {
	Mount      *MountVolume `json:"mount,omitempty"`
	Block      *BlockVolume `json:"block,omitempty"`
	AccessMode *AccessMode  `json:"access_mode"`
}

// MountVolume is VolumeCapability.MountVolume.
type MountVolume struct {
	FSType     string   `json:"fs_type,omitempty"`
	MountFlags []string `json:"mount_flags,omitempty"`
}

// BlockVolume is VolumeCapability.BlockVolume (no fields).
type BlockVolume struct{}

// AccessMode is VolumeCapability.AccessMode.
type AccessMode struct {
	Mode string `json:"mode"`
}

// Modules is mesos.proto Modules, the JSON of the agent's --modules flag.
type Modules struct {
	Libraries []ModuleLibrary `json:"libraries"`
}

// ModuleLibrary is Modules.Library.
type ModuleLibrary struct {
	File    string   `json:"file,omitempty"`
	Name    string   `json:"name,omitempty"`
	Modules []Module `json:"modules"`
}

// Module is Modules.Library.Module.
type Module struct {
	Name       string      `json:"name"`
	Parameters []Parameter `json:"parameters,omitempty"`
}

// Parameter is mesos.proto Parameter.
type Parameter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// AgentFeatures is the JSON of the agent's --agent_features flag.
type AgentFeatures struct {
	Capabilities []AgentCapability `json:"capabilities"`
}

// AgentCapability is SlaveInfo.Capability.
type AgentCapability struct {
	Type string `json:"type"`
}
