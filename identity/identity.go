// Package identity implements the CSI Identity service: who the plugin is,
// which services it offers, and whether its backends can serve.
package identity

import (
	"context"
	"runtime/debug"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// PluginName is the name the plugin reports and that Mesos plugin configs
// use as their type.
const PluginName = "csi.libstorage.io"

// Version is set at link time (-X); when empty, the module version from the
// build info is used.
var Version = ""

// VendorVersion returns the plugin's version.
func VendorVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "0.0.0-" + s.Value[:12]
			}
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	return "0.0.0-dev"
}

// Service is the identity service.
type Service struct {
	csi.UnimplementedIdentityServer
	set        *backends.Set
	controller bool
	log        *zap.Logger
}

// New returns the identity service. controller says whether this process
// serves the controller service.
func New(set *backends.Set, controller bool, log *zap.Logger) *Service {
	if log == nil {
		log = zap.NewNop()
	}
	return &Service{set: set, controller: controller, log: log}
}

// GetPluginInfo implements csi.IdentityServer.
func (s *Service) GetPluginInfo(ctx context.Context, req *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: PluginName, VendorVersion: VendorVersion()}, nil
}

// GetPluginCapabilities implements csi.IdentityServer. Mesos fails plugin
// start-up when it configures a controller container and this does not
// list CONTROLLER_SERVICE, so it follows the process's mode.
func (s *Service) GetPluginCapabilities(ctx context.Context, req *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	var caps []*csi.PluginCapability
	svc := func(t csi.PluginCapability_Service_Type) {
		caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}})
	}
	if s.controller {
		svc(csi.PluginCapability_Service_CONTROLLER_SERVICE)
	}
	for _, b := range s.set.All() {
		if b.Capabilities().Topology {
			svc(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS)
			break
		}
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe implements csi.IdentityServer. An unhealthy backend makes the
// plugin report not ready rather than fail the call: Mesos treats any
// Probe error at start-up as fatal, while ready=false lets a CO that reads
// it (a Kubernetes liveness probe) wait.
func (s *Service) Probe(ctx context.Context, req *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	ready := true
	for _, b := range s.set.All() {
		if err := b.Probe(ctx); err != nil {
			ready = false
			s.log.Warn("backend not ready", zap.String("backend", b.Name()), zap.Error(err))
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(ready)}, nil
}
