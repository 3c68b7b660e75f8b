package ec2sim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDS returns the IMDSv2 handler of one simulated instance (the handler is
// created once and shared by later calls). It panics if instanceID was not
// configured in Options.Instances.
//
// Served paths: PUT /latest/api/token (header
// X-aws-ec2-metadata-token-ttl-seconds, 1–21600; 400 otherwise), and, with
// a valid X-aws-ec2-metadata-token header (401 otherwise): GET
// /latest/meta-data/{instance-id, instance-type, ami-id, local-hostname,
// placement/availability-zone, placement/availability-zone-id,
// placement/region, block-device-mapping/{ami,root}} plus directory
// listings of meta-data/, placement/ and block-device-mapping/, and
// /latest/dynamic/instance-identity/document. Everything else is 404.
// IMDSv1 (GET without token) is refused, as on instances that require
// IMDSv2.
func (s *Server) IMDS(instanceID string) http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.imdsLocked(instanceID)
}

func (s *Server) imdsLocked(instanceID string) *imdsHandler {
	if h, ok := s.imdsHandler[instanceID]; ok {
		return h
	}
	in, ok := s.instances[instanceID]
	if !ok {
		panic(fmt.Sprintf("ec2sim: IMDS for unknown instance %q", instanceID))
	}
	zi := 0
	for i, z := range s.zones {
		if z == in.AvailabilityZone {
			zi = i
		}
	}
	h := &imdsHandler{inst: in.Instance, region: s.region, zoneID: s.zoneID(zi), launch: in.launch, tokens: map[string]time.Time{}}
	s.imdsHandler[instanceID] = h
	return h
}

// IMDSURL starts (once) a loopback server for the instance's IMDS handler
// and returns its URL, for imds.Options.Endpoint or
// AWS_EC2_METADATA_SERVICE_ENDPOINT. Close stops it.
func (s *Server) IMDSURL(instanceID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.imdsSrv[instanceID]; ok {
		return h.URL
	}
	if s.closed {
		panic("ec2sim: IMDSURL after Close")
	}
	h := httptest.NewServer(s.imdsLocked(instanceID))
	s.imdsSrv[instanceID] = h
	return h.URL
}

type imdsHandler struct {
	inst   Instance
	region string
	zoneID string
	launch time.Time

	mu     sync.Mutex
	tokens map[string]time.Time // token → expiry
}

func (h *imdsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "invalid or missing X-aws-ec2-metadata-token-ttl-seconds", http.StatusBadRequest)
			return
		}
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		tok := base64.RawURLEncoding.EncodeToString(b)
		h.mu.Lock()
		h.tokens[tok] = time.Now().Add(time.Duration(ttl) * time.Second)
		h.mu.Unlock()
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(tok))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.mu.Lock()
	exp, ok := h.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
	h.mu.Unlock()
	if !ok || time.Now().After(exp) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	body, ok := h.lookup(strings.TrimSuffix(r.URL.Path, "/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/document") {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "text/plain")
	}
	_, _ = w.Write([]byte(body))
}

func (h *imdsHandler) lookup(path string) (string, bool) {
	in := h.inst
	md := map[string]string{
		"instance-id":                    in.ID,
		"instance-type":                  in.InstanceType,
		"ami-id":                         "ami-0123456789abcdef0",
		"local-hostname":                 PrivateDNSName(h.region, in.ID),
		"placement/availability-zone":    in.AvailabilityZone,
		"placement/availability-zone-id": h.zoneID,
		"placement/region":               h.region,
		"block-device-mapping/ami":       "/dev/xvda",
		"placement":                      "availability-zone\navailability-zone-id\nregion",
		"block-device-mapping":           "ami",
		"":                               "ami-id\nblock-device-mapping/\ninstance-id\ninstance-type\nlocal-hostname\nplacement/",
	}
	if in.RootDeviceName != "" {
		md["block-device-mapping/ami"] = in.RootDeviceName
		md["block-device-mapping/root"] = in.RootDeviceName
		md["block-device-mapping"] = "ami\nroot"
	}
	var macs []string
	for i := range max(in.NetworkInterfaces, 1) {
		macs = append(macs, fmt.Sprintf("0e:00:00:00:00:%02x/", i+1))
	}
	md["network/interfaces/macs"] = strings.Join(macs, "\n")
	for i := range in.InstanceStoreVolumes {
		k := fmt.Sprintf("ephemeral%d", i)
		md["block-device-mapping"] += "\n" + k
		md["block-device-mapping/"+k] = fmt.Sprintf("sd%c", 'b'+i)
	}
	if rest, ok := strings.CutPrefix(path, "/latest/meta-data"); ok {
		v, ok := md[strings.TrimPrefix(rest, "/")]
		return v, ok
	}
	if path == "/latest/dynamic/instance-identity/document" {
		doc := map[string]any{
			"accountId":               AccountID,
			"architecture":            "x86_64",
			"availabilityZone":        in.AvailabilityZone,
			"billingProducts":         nil,
			"devpayProductCodes":      nil,
			"marketplaceProductCodes": nil,
			"imageId":                 "ami-0123456789abcdef0",
			"instanceId":              in.ID,
			"instanceType":            in.InstanceType,
			"kernelId":                nil,
			"pendingTime":             h.launch.UTC().Format(time.RFC3339),
			"privateIp":               "10.0.0.1",
			"ramdiskId":               nil,
			"region":                  h.region,
			"version":                 "2017-09-30",
		}
		b, _ := json.MarshalIndent(doc, "", "  ")
		return string(b), true
	}
	return "", false
}
