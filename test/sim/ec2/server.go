package ec2sim

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Namespace is the XML namespace of every EC2 response.
const Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// AccountID is the owner id reported for volumes, snapshots and reservations.
const AccountID = "123456789012"

// DefaultStateDelay is the default time an asynchronous transition takes.
const DefaultStateDelay = 30 * time.Millisecond

// Instance describes a simulated EC2 instance. Instances are fixed at New.
type Instance struct {
	ID               string // "i-" + 8 or 17 lowercase hex digits
	AvailabilityZone string // must be one of Options.Zones
	InstanceType     string // default "m5.large"
	// RootDeviceName, if set (e.g. "/dev/xvda"), gives the instance an
	// 8 GiB gp3 root volume attached at that name. The root volume is a
	// normal volume in DescribeVolumes but is never handed to Devices.
	RootDeviceName string
	// NetworkInterfaces (default 1) and InstanceStoreVolumes take
	// attachment slots on Nitro instance types; MaxAttachments, if set,
	// is the instance's limit of attached volumes (root included) instead
	// of the one its type and those give.
	NetworkInterfaces, InstanceStoreVolumes, MaxAttachments int
}

// Options configures a Server.
type Options struct {
	Region string // default "us-east-1"
	// Zones are the availability zones of the region. Default
	// Region+"a", Region+"b", Region+"c".
	Zones     []string
	Instances []Instance
	// StateDelay is how long every asynchronous transition takes
	// (volume creating→available, attaching→attached, detaching→gone,
	// deleting→gone, snapshot pending→completed, modification
	// modifying→optimizing→completed). Zero means DefaultStateDelay;
	// a negative value means "as soon as possible" (still asynchronous).
	StateDelay time.Duration
	// Devices, if non-nil, is told when a volume's device must appear on
	// or disappear from an instance, grow, or be destroyed.
	Devices Devices
	// Logf, if non-nil, receives one line per request and per device error.
	Logf func(format string, args ...any)
}

// Server is a stateful in-memory EC2 endpoint (Query protocol) plus
// per-instance IMDSv2 endpoints. It is safe for concurrent use.
type Server struct {
	region string
	zones  []string
	delay  time.Duration
	dev    Devices
	logf   func(string, ...any)

	mu          sync.Mutex
	closed      bool
	volumes     map[string]*volume
	snapshots   map[string]*snapshot
	instances   map[string]*instance
	instOrder   []string
	tokens      map[string]*clientToken
	calls       map[string]int
	faults      map[string][]fault
	holdAttach  bool
	holdDetach  bool
	deviceErrs  []error
	strict      strictState
	auth        authState
	timers      map[*timerBox]struct{}
	wg          sync.WaitGroup
	ec2Srv      *httptest.Server
	imdsSrv     map[string]*httptest.Server
	imdsHandler map[string]*imdsHandler
}

type fault struct{ code, message string }

type timerBox struct{ t *time.Timer }

var (
	reVolumeID   = regexp.MustCompile(`^vol-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reInstanceID = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	reSnapshotID = regexp.MustCompile(`^snap-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

// New returns a Server configured by opts. It does not listen; use Start,
// or mount the Server (an http.Handler) yourself.
func New(opts Options) (*Server, error) {
	s := &Server{
		region:      opts.Region,
		zones:       append([]string(nil), opts.Zones...),
		delay:       opts.StateDelay,
		dev:         opts.Devices,
		logf:        opts.Logf,
		volumes:     map[string]*volume{},
		snapshots:   map[string]*snapshot{},
		instances:   map[string]*instance{},
		tokens:      map[string]*clientToken{},
		calls:       map[string]int{},
		faults:      map[string][]fault{},
		timers:      map[*timerBox]struct{}{},
		imdsSrv:     map[string]*httptest.Server{},
		imdsHandler: map[string]*imdsHandler{},
	}
	if s.region == "" {
		s.region = "us-east-1"
	}
	if len(s.zones) == 0 {
		s.zones = []string{s.region + "a", s.region + "b", s.region + "c"}
	}
	switch {
	case s.delay == 0:
		s.delay = DefaultStateDelay
	case s.delay < 0:
		s.delay = 0
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	now := time.Now().UTC()
	for _, in := range opts.Instances {
		if !reInstanceID.MatchString(in.ID) {
			return nil, fmt.Errorf("ec2sim: malformed instance id %q", in.ID)
		}
		if _, dup := s.instances[in.ID]; dup {
			return nil, fmt.Errorf("ec2sim: duplicate instance id %q", in.ID)
		}
		if !s.knownZone(in.AvailabilityZone) {
			return nil, fmt.Errorf("ec2sim: instance %s: unknown availability zone %q (zones %v)", in.ID, in.AvailabilityZone, s.zones)
		}
		if in.InstanceType == "" {
			in.InstanceType = "m5.large"
		}
		inst := &instance{Instance: in, launch: now, tags: map[string]string{}}
		s.instances[in.ID] = inst
		s.instOrder = append(s.instOrder, in.ID)
		if in.RootDeviceName != "" {
			if !reDevice.MatchString(in.RootDeviceName) {
				return nil, fmt.Errorf("ec2sim: instance %s: invalid root device name %q", in.ID, in.RootDeviceName)
			}
			v := &volume{
				id: s.newID("vol"), az: in.AvailabilityZone, sizeGiB: 8, volType: "gp3",
				iops: 3000, throughput: 125, state: "in-use", created: now, tags: map[string]string{},
			}
			v.att = &attachment{instanceID: in.ID, device: in.RootDeviceName, state: "attached", time: now, deleteOnTermination: true}
			s.volumes[v.id] = v
		}
	}
	return s, nil
}

// Start serves the EC2 endpoint on a loopback httptest server and returns
// its URL (use it as ec2.Options.BaseEndpoint). Calling it again returns
// the same URL.
func (s *Server) Start() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ec2Srv == nil {
		s.ec2Srv = httptest.NewServer(s)
	}
	return s.ec2Srv.URL
}

// URL returns the URL of the EC2 endpoint started by Start, or "".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ec2Srv == nil {
		return ""
	}
	return s.ec2Srv.URL
}

// Close stops the listeners started by Start and IMDSURL, cancels pending
// transitions and, if Options.Devices implements io.Closer, closes it
// (LoopDevices detaches every loop device it made). Volumes are not
// detached through Devices first. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srvs := []*httptest.Server{s.ec2Srv}
	for _, h := range s.imdsSrv {
		srvs = append(srvs, h)
	}
	for b := range s.timers {
		if b.t.Stop() {
			s.wg.Done()
		}
	}
	clear(s.timers)
	s.mu.Unlock()
	for _, h := range srvs {
		if h != nil {
			h.Close()
		}
	}
	s.wg.Wait()
	if c, ok := s.dev.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Calls returns how many requests named action the server has received
// (including ones that failed, by injected fault or otherwise).
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// CallCounts returns a copy of the per-action request counters.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		m[k] = v
	}
	return m
}

// ResetCalls zeroes the per-action request counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// FailNext makes the next n requests of action fail with the EC2 error
// code (e.g. "RequestLimitExceeded", "InternalError",
// "VolumeLimitExceeded") before any validation or state change. The HTTP
// status follows the code: 503 for RequestLimitExceeded and
// ServiceUnavailable/Unavailable, 500 for InternalError/InternalFailure,
// 400 otherwise. An empty message gets a generic one. Faults queue up.
func (s *Server) FailNext(action string, n int, code, message string) {
	if message == "" {
		message = "ec2sim: injected " + code
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[action] = append(s.faults[action], fault{code, message})
	}
}

// HoldAttach(true) makes attachments stay in "attaching" (the volume is
// "in-use" but the device never appears) until HoldAttach(false), after
// which pending attachments complete after the usual delay. A detach
// (forced or not, see DetachVolume) still works on a held attachment.
func (s *Server) HoldAttach(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdAttach = hold
	if !hold {
		for _, v := range s.volumes {
			if a := v.att; a != nil && a.state == "attaching" && !a.scheduled {
				s.scheduleAttach(v, a)
			}
		}
	}
}

// HoldDetach(true) makes non-forced detaches stay in "detaching" until
// HoldDetach(false). DetachVolume with Force=true is never held.
func (s *Server) HoldDetach(hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdDetach = hold
	if !hold {
		for _, v := range s.volumes {
			if a := v.att; a != nil && a.state == "detaching" && !a.scheduled {
				s.scheduleDetach(v, a, false)
			}
		}
	}
}

// DeviceErrors returns the errors Devices returned so far. An attachment
// whose Devices.Attach failed stays in "attaching".
func (s *Server) DeviceErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.deviceErrs...)
}

// VolumeInfo is a read-only view of a simulated volume, for assertions.
type VolumeInfo struct {
	ID, AvailabilityZone, State, VolumeType string
	SizeGiB                                 int32
	Tags                                    map[string]string
	// Attachment fields are empty when the volume has no attachment.
	InstanceID, Device, AttachmentState string
}

// Volumes lists the volumes that exist (including "deleting" ones), sorted by id.
func (s *Server) Volumes() []VolumeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VolumeInfo, 0, len(s.volumes))
	for _, v := range s.volumes {
		vi := VolumeInfo{ID: v.id, AvailabilityZone: v.az, State: v.state, VolumeType: v.volType, SizeGiB: v.sizeGiB, Tags: map[string]string{}}
		for k, t := range v.tags {
			vi.Tags[k] = t
		}
		if v.att != nil {
			vi.InstanceID, vi.Device, vi.AttachmentState = v.att.instanceID, v.att.device, v.att.state
		}
		out = append(out, vi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ServeHTTP implements the EC2 Query protocol: a form-encoded request
// (POST body or URL query) with Action and Version.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	if err := r.ParseForm(); err != nil {
		writeError(w, reqID, errf("MalformedQueryString", "%v", err))
		return
	}
	p := params(r.Form)
	action := p.str("Action")
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, reqID, &apiError{Code: "ServiceUnavailable", Message: "ec2sim: server closed", Status: 503})
		return
	}
	s.calls[action]++
	var (
		resp response
		aerr *apiError
	)
	if uerr := s.authorize(accessKeyOf(r), action); uerr != nil {
		aerr = uerr
	} else if terr := s.throttled(action); terr != nil {
		aerr = terr
	} else if q := s.faults[action]; len(q) > 0 {
		s.faults[action] = q[1:]
		aerr = errf(q[0].code, "%s", q[0].message)
	} else {
		resp, aerr = s.dispatch(action, p)
	}
	s.mu.Unlock()
	if aerr != nil {
		s.logf("ec2sim: %s -> %s: %s", action, aerr.Code, aerr.Message)
		writeError(w, reqID, aerr)
		return
	}
	s.logf("ec2sim: %s ok", action)
	writeResponse(w, action, reqID, resp)
}

type handlerFunc func(s *Server, p params) (response, *apiError)

var handlers map[string]handlerFunc

func init() {
	handlers = map[string]handlerFunc{
		"CreateVolume":                 (*Server).createVolume,
		"DeleteVolume":                 (*Server).deleteVolume,
		"DescribeVolumes":              (*Server).describeVolumes,
		"AttachVolume":                 (*Server).attachVolume,
		"DetachVolume":                 (*Server).detachVolume,
		"DescribeInstances":            (*Server).describeInstances,
		"CreateTags":                   (*Server).createTags,
		"DeleteTags":                   (*Server).deleteTags,
		"ModifyVolume":                 (*Server).modifyVolume,
		"DescribeVolumesModifications": (*Server).describeVolumesModifications,
		"CreateSnapshot":               (*Server).createSnapshot,
		"DeleteSnapshot":               (*Server).deleteSnapshot,
		"DescribeSnapshots":            (*Server).describeSnapshots,
		"DescribeAvailabilityZones":    (*Server).describeAvailabilityZones,
		"CopyVolumes":                  (*Server).copyVolumes,
	}
}

func (s *Server) dispatch(action string, p params) (response, *apiError) {
	if action == "" {
		return nil, errf("MissingAction", "The request must contain the parameter Action.")
	}
	h, ok := handlers[action]
	if !ok {
		return nil, errf("InvalidAction", "The action %s is not valid for this web service.", action)
	}
	if p.str("Version") == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter Version.")
	}
	if p.str("DryRun") == "true" {
		return nil, &apiError{Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set.", Status: http.StatusPreconditionFailed}
	}
	return h(s, p)
}

// after runs fn under s.mu once the state delay has passed, unless the
// server has been closed. Callers hold s.mu.
func (s *Server) after(fn func()) { s.afterDelay(s.delay, fn) }

// afterDelay is after with a delay of its own. Callers hold s.mu.
func (s *Server) afterDelay(d time.Duration, fn func()) {
	b := &timerBox{}
	s.wg.Add(1)
	s.timers[b] = struct{}{}
	b.t = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.timers, b)
		if s.closed {
			return
		}
		fn()
	})
}

func (s *Server) deviceError(err error) {
	s.logf("ec2sim: device error: %v", err)
	s.deviceErrs = append(s.deviceErrs, err)
}

func (s *Server) knownZone(z string) bool {
	for _, k := range s.zones {
		if k == z {
			return true
		}
	}
	return false
}

// newID returns prefix + "-" + 17 hex digits not used by any resource.
func (s *Server) newID(prefix string) string {
	for {
		b := make([]byte, 9)
		_, _ = rand.Read(b)
		id := prefix + "-" + hex.EncodeToString(b)[:17]
		_, v := s.volumes[id]
		_, sn := s.snapshots[id]
		if !v && !sn {
			return id
		}
	}
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// apiError is an EC2 error response.
type apiError struct {
	Code, Message string
	Status        int // 0 means derived from Code
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func statusFor(code string) int {
	switch code {
	case "RequestLimitExceeded", "ServiceUnavailable", "Unavailable":
		return http.StatusServiceUnavailable
	case "InternalError", "InternalFailure":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

type xmlErrorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []xmlError `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type xmlError struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func writeError(w http.ResponseWriter, reqID string, e *apiError) {
	status := e.Status
	if status == 0 {
		status = statusFor(e.Code)
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	_ = xml.NewEncoder(&buf).Encode(xmlErrorResponse{Errors: []xmlError{{e.Code, e.Message}}, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// response is implemented by every response body via the embedded hdr.
type response interface{ setRequestID(string) }

type hdr struct {
	RequestID string `xml:"requestId"`
}

func (h *hdr) setRequestID(id string) { h.RequestID = id }

func writeResponse(w http.ResponseWriter, action, reqID string, body response) {
	body.setRequestID(reqID)
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	err := enc.EncodeElement(body, xml.StartElement{Name: xml.Name{Space: Namespace, Local: action + "Response"}})
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		writeError(w, reqID, errf("InternalError", "ec2sim: encoding response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write(buf.Bytes())
}
