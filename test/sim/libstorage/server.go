package libstoragesim

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Devices makes a block service's volumes appear on instances. The server
// calls it from the service's task worker.
type Devices interface {
	Attach(driver, instanceID, volumeID string, sizeBytes int64) error
	Detach(driver, instanceID, volumeID string) error
	Delete(volumeID string) error
}

// Copier is implemented by Devices whose volumes hold data that snapshots
// and copies must carry (vfs copies none). Copy copies what src holds to
// dst; ids are volume or snapshot ids.
type Copier interface {
	Copy(src, dst string) error
}

// copyData copies src to dst when the service's devices hold data.
func (sv *service) copyData(src, dst string) error {
	if c, ok := sv.cfg.Devices.(Copier); ok {
		return c.Copy(src, dst)
	}
	return nil
}

// Service configures one libStorage service.
type Service struct {
	Name       string
	Driver     string
	Type       string
	NextDevice NextDevice
	// SingleAttach makes attach refuse a volume attached to another
	// instance unless force is set, as the block drivers do. vfs does not.
	SingleAttach bool
	// VFSRoot, for a vfs service, is where vol/<id>/ directories and
	// vol/<id>.json files are kept.
	VFSRoot string
	// Devices, for a block service, makes attached volumes appear.
	Devices Devices
	// Export, for a nas service, is the NFS export (host:/path) under
	// which attachments name a volume: its device name is Export/<id>, as
	// the efs and isilon drivers give the mount source.
	Export string
	// IDFormat formats the n-th volume id; default "<driver>-%03d".
	IDFormat string
}

// Options configure a Server.
type Options struct {
	Services []Service
	// TaskTimeout is how long a request waits for its task before the
	// server answers 408 with the task (the real default is 60 s).
	TaskTimeout time.Duration
	// OnTimeout, if set, is called after a 408 has been written.
	OnTimeout func(service string, task int)
	// TLS serves HTTPS with httptest's certificate.
	TLS bool
	// Unix, if set, serves on this unix socket instead of TCP.
	Unix string
	// Token, if set, is the bearer token every request must carry.
	Token string
}

// Call is one request the server received, for tests to assert on.
type Call struct {
	Method, Path, Query string
	InstanceID          string
	LocalDevices        string
}

type service struct {
	cfg   Service
	queue chan *task
	vols  map[string]*Volume
	snaps map[string]*Snapshot
	seq   int

	holdMu sync.Mutex
	gate   chan struct{} // non-nil while held
}

type task struct {
	Task
	svc  string
	run  func() (int, any)
	code int
	body any
	done chan struct{}
}

// Server is a running libStorage test server.
type Server struct {
	opt  Options
	http *httptest.Server
	lis  net.Listener
	srv  *http.Server

	mu       sync.Mutex
	services map[string]*service
	order    []string
	tasks    map[int]*task
	taskSeq  int
	calls    []Call
	lose     map[string]int // operation → responses still to lose
	stop     chan struct{}
	wg       sync.WaitGroup
}

// New builds a server; Start serves it.
func New(opt Options) (*Server, error) {
	if opt.TaskTimeout <= 0 {
		opt.TaskTimeout = 60 * time.Second
	}
	s := &Server{opt: opt, services: map[string]*service{}, tasks: map[int]*task{}, lose: map[string]int{}, stop: make(chan struct{})}
	for _, c := range opt.Services {
		if c.Name == "" || c.Driver == "" {
			return nil, fmt.Errorf("libstoragesim: a service needs a name and a driver")
		}
		switch c.Type {
		case TypeBlock, TypeNAS, TypeObject:
		default:
			return nil, fmt.Errorf("libstoragesim: service %s: type %q", c.Name, c.Type)
		}
		if c.VFSRoot != "" {
			for _, d := range []string{"vol", "snap"} {
				if err := os.MkdirAll(filepath.Join(c.VFSRoot, d), 0o755); err != nil {
					return nil, err
				}
			}
		}
		if c.IDFormat == "" {
			c.IDFormat = c.Driver + "-%03d"
		}
		sv := &service{cfg: c, queue: make(chan *task, 1024), vols: map[string]*Volume{}, snaps: map[string]*Snapshot{}}
		s.services[c.Name] = sv
		s.order = append(s.order, c.Name)
		s.wg.Add(1)
		go s.worker(sv)
	}
	return s, nil
}

// Start serves the API and returns the host the client configures:
// tcp://host:port, https://host:port or unix:///path.
func (s *Server) Start() (string, error) {
	mux := s.routes()
	if s.opt.Unix != "" {
		l, err := net.Listen("unix", s.opt.Unix)
		if err != nil {
			return "", err
		}
		s.lis = l
		s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go s.srv.Serve(l)
		return "unix://" + s.opt.Unix, nil
	}
	s.http = httptest.NewUnstartedServer(mux)
	if s.opt.TLS {
		s.http.StartTLS()
		return "https://" + s.http.Listener.Addr().String(), nil
	}
	s.http.Start()
	return "tcp://" + s.http.Listener.Addr().String(), nil
}

// Certificate returns the PEM of the TLS server's certificate.
func (s *Server) Certificate() []byte {
	if s.http == nil || s.http.Certificate() == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.http.Certificate().Raw})
}

// Close stops the server and its workers. Held services are released.
func (s *Server) Close() {
	if s.http != nil {
		s.http.CloseClientConnections()
		s.http.Close()
	}
	if s.srv != nil {
		s.srv.Close()
	}
	for _, sv := range s.services {
		s.release(sv)
	}
	close(s.stop)
	s.wg.Wait()
}

// Volumes returns a copy of a service's volumes, sorted by id.
func (s *Server) Volumes(svc string) []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.services[svc]
	if sv == nil {
		return nil
	}
	var out []Volume
	for _, v := range sv.vols {
		c := *v
		c.Attachments = slices.Clone(v.Attachments)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Calls returns the requests received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Hold stops svc's worker before its next task until the returned func is
// called (tasks queue meanwhile).
func (s *Server) Hold(svc string) (release func()) {
	sv := s.services[svc]
	sv.holdMu.Lock()
	if sv.gate == nil {
		sv.gate = make(chan struct{})
	}
	sv.holdMu.Unlock()
	return func() { s.release(sv) }
}

func (s *Server) release(sv *service) {
	sv.holdMu.Lock()
	defer sv.holdMu.Unlock()
	if sv.gate != nil {
		close(sv.gate)
		sv.gate = nil
	}
}

// LoseResponses makes the next n responses to op ("create", "attach",
// "detach", "delete") vanish after the operation has been done: the
// connection is closed instead, as when a network drops the answer.
func (s *Server) LoseResponses(op string, n int) {
	s.mu.Lock()
	s.lose[op] += n
	s.mu.Unlock()
}

func (s *Server) worker(sv *service) {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case t := <-sv.queue:
			sv.holdMu.Lock()
			gate := sv.gate
			sv.holdMu.Unlock()
			if gate != nil {
				select {
				case <-gate:
				case <-s.stop:
				}
			}
			s.mu.Lock()
			t.State, t.StartTime = "running", time.Now().Unix()
			s.mu.Unlock()
			code, body := t.run()
			s.mu.Lock()
			t.code, t.body, t.CompleteTime = code, body, time.Now().Unix()
			if code >= 400 {
				t.State, t.Error = "error", body
			} else {
				t.State, t.Result = "success", body
			}
			s.mu.Unlock()
			close(t.done)
		}
	}
}

// apiError is the body of every error answer.
type apiError struct {
	Message string `json:"message"`
	Status  int    `json:"status"`
	Error   any    `json:"error"`
}

// fail writes an error answer.
func fail(w http.ResponseWriter, code int, msg string, detail any) {
	c, body := errBody(code, msg, detail)
	write(w, c, body)
}

func failNotFound(w http.ResponseWriter, id string) {
	c, body := notFound(id)
	write(w, c, body)
}

func errBody(code int, msg string, detail any) (int, any) {
	if detail == nil {
		detail = msg
	}
	return code, apiError{Message: msg, Status: code, Error: detail}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host
		write(w, 200, []string{base + "/services", base + "/snapshots", base + "/tasks", base + "/help", base + "/volumes"})
	})
	mux.HandleFunc("GET /services", s.getServices)
	mux.HandleFunc("GET /services/{svc}", s.getService)
	mux.HandleFunc("GET /volumes", s.getAllVolumes)
	mux.HandleFunc("GET /volumes/{svc}", s.getVolumes)
	mux.HandleFunc("POST /volumes/{svc}", s.postVolumes)
	mux.HandleFunc("GET /volumes/{svc}/{id}", s.getVolume)
	mux.HandleFunc("POST /volumes/{svc}/{id}", s.postVolume)
	mux.HandleFunc("DELETE /volumes/{svc}/{id}", s.deleteVolume)
	mux.HandleFunc("GET /snapshots/{svc}", s.getSnapshots)
	mux.HandleFunc("GET /snapshots/{svc}/{id}", s.getSnapshot)
	mux.HandleFunc("POST /snapshots/{svc}/{id}", s.postSnapshot)
	mux.HandleFunc("DELETE /snapshots/{svc}/{id}", s.deleteSnapshot)
	mux.HandleFunc("GET /tasks", s.getTasks)
	mux.HandleFunc("GET /tasks/{id}", s.getTask)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(headerServerName, "simulated-server")
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			InstanceID: r.Header.Get(headerInstanceID), LocalDevices: r.Header.Get(headerLocalDevices)})
		s.mu.Unlock()
		if s.opt.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.opt.Token {
			fail(w, 401, "unauthorized", nil)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func write(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code == http.StatusNoContent {
		return
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) svc(w http.ResponseWriter, r *http.Request) *service {
	sv := s.services[r.PathValue("svc")]
	if sv == nil {
		fail(w, 404, "resource not found", map[string]string{"resourceID": r.PathValue("svc")})
	}
	return sv
}

func (s *Server) getServices(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	for _, n := range s.order {
		out[n] = serviceInfo(s.services[n])
	}
	write(w, 200, out)
}

func serviceInfo(sv *service) map[string]any {
	return map[string]any{"name": sv.cfg.Name, "driver": Driver{Name: sv.cfg.Driver, Type: sv.cfg.Type, NextDevice: sv.cfg.NextDevice}}
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	if sv := s.svc(w, r); sv != nil {
		write(w, 200, serviceInfo(sv))
	}
}

// caller reads the instance id the request carries for sv's driver.
func caller(r *http.Request, sv *service) (InstanceID, bool, error) {
	for _, v := range r.Header.Values(headerInstanceID) {
		iid, _, err := ParseInstanceID(v)
		if err != nil {
			return InstanceID{}, false, err
		}
		if iid.Driver == sv.cfg.Driver {
			return iid, iid.ID != "", nil
		}
	}
	return InstanceID{}, false, nil
}

func attachmentsMask(r *http.Request) int {
	n, _ := strconv.Atoi(r.URL.Query().Get("attachments"))
	return n
}

// view renders v for a caller: attachments only when asked for, the
// attachment state only when the caller named itself.
func view(v *Volume, mask int, me InstanceID, known bool) Volume {
	c := *v
	c.Attachments = nil
	if mask&attachmentsRequested == 0 && !known {
		return c
	}
	if mask&attachmentsRequested != 0 {
		for _, a := range v.Attachments {
			if mask&attachmentsMine != 0 && a.InstanceID.ID != me.ID {
				continue
			}
			c.Attachments = append(c.Attachments, a)
		}
	}
	if known {
		c.AttachmentState = Available
		for _, a := range v.Attachments {
			if a.InstanceID.ID == me.ID {
				c.AttachmentState = AttachedToMe
				break
			}
			c.AttachmentState = AttachedElsewhere
		}
	}
	return c
}

func (s *Server) listVolumes(r *http.Request, sv *service) (map[string]Volume, error) {
	me, known, err := caller(r, sv)
	if err != nil {
		return nil, err
	}
	out := map[string]Volume{}
	for id, v := range sv.vols {
		out[id] = view(v, attachmentsMask(r), me, known)
	}
	return out, nil
}

func (s *Server) getAllVolumes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]Volume{}
	for _, n := range s.order {
		m, err := s.listVolumes(r, s.services[n])
		if err != nil {
			write(errBody400(w, err))
			return
		}
		out[n] = m
	}
	write(w, 200, out)
}

func errBody400(w http.ResponseWriter, err error) (http.ResponseWriter, int, any) {
	code, body := errBody(400, err.Error(), nil)
	return w, code, body
}

func (s *Server) getVolumes(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.listVolumes(r, sv)
	if err != nil {
		write(errBody400(w, err))
		return
	}
	write(w, 200, m)
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	me, known, err := caller(r, sv)
	if err != nil {
		write(errBody400(w, err))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := sv.vols[r.PathValue("id")]
	if v == nil {
		failNotFound(w, r.PathValue("id"))
		return
	}
	write(w, 200, view(v, attachmentsMask(r), me, known))
}

func notFound(id string) (int, any) {
	return errBody(404, "resource not found", map[string]string{"resourceID": id})
}

// decode reads a body the way the schema validator does: an unknown
// field is a 500. It answers the error itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(w, 400, err.Error(), nil)
		return false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, 500, fmt.Sprintf("validate req schema: validation error: %v; additionalProperties is set to false", err), nil)
		return false
	}
	return true
}

// submit queues fn as a task of sv and answers with its result, 408 with
// the task after the task timeout, or 202 at once with ?async=true.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, sv *service, op string, fn func() (int, any)) {
	s.mu.Lock()
	t := &task{svc: sv.cfg.Name, run: fn, done: make(chan struct{})}
	t.ID, t.QueueTime, t.State = s.taskSeq, time.Now().Unix(), "queued"
	s.taskSeq++
	s.tasks[t.ID] = t
	snapshot := t.Task
	s.mu.Unlock()
	sv.queue <- t
	if r.URL.Query().Get("async") == "true" {
		write(w, http.StatusAccepted, snapshot)
		return
	}
	timer := time.NewTimer(s.opt.TaskTimeout)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
		s.mu.Lock()
		snapshot = t.Task
		s.mu.Unlock()
		write(w, http.StatusRequestTimeout, snapshot)
		if s.opt.OnTimeout != nil {
			s.opt.OnTimeout(sv.cfg.Name, t.ID)
		}
		return
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	lose := t.code < 400 && s.lose[op] > 0
	if lose {
		s.lose[op]--
	}
	s.mu.Unlock()
	if lose {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
	}
	write(w, t.code, t.body)
}

func (s *Server) getTasks(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Task{}
	for id, t := range s.tasks {
		out[strconv.Itoa(id)] = t.Task
	}
	write(w, 200, out)
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[id]
	if err != nil || t == nil {
		failNotFound(w, r.PathValue("id"))
		return
	}
	write(w, 200, t.Task)
}

// newVolume adds a volume to sv; s.mu is held.
func (s *Server) newVolume(sv *service, req createRequest) (*Volume, error) {
	v := &Volume{ID: fmt.Sprintf(sv.cfg.IDFormat, sv.seq), Name: req.Name, Size: 16, Status: "available"}
	sv.seq++
	if req.Size != nil {
		v.Size = *req.Size
	}
	if req.IOPS != nil {
		v.IOPS = *req.IOPS
	}
	if req.Type != nil {
		v.Type = *req.Type
	}
	if req.AvailabilityZone != nil {
		v.AvailabilityZone = *req.AvailabilityZone
	}
	if req.Encrypted != nil {
		v.Encrypted = *req.Encrypted
	}
	if req.EncryptionKey != nil {
		v.encryptionKey = *req.EncryptionKey
	}
	if len(req.Opts) > 0 {
		v.Fields = map[string]string{}
		for k, o := range req.Opts {
			v.Fields[k] = fmt.Sprint(o)
		}
	}
	if sv.cfg.VFSRoot != "" {
		dir := filepath.Join(sv.cfg.VFSRoot, "vol", v.ID)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		meta, _ := json.Marshal(map[string]any{"name": v.Name, "size": v.Size, "id": v.ID, "type": v.Type})
		if err := os.WriteFile(dir+".json", meta, 0o644); err != nil {
			return nil, err
		}
	}
	sv.vols[v.ID] = v
	return v, nil
}

// decodeCreate reads a create body, which must have a name.
func decodeCreate(w http.ResponseWriter, r *http.Request) (createRequest, bool) {
	var req createRequest
	if !decode(w, r, &req) {
		return req, false
	}
	if req.Name == "" {
		fail(w, 500, `validate req schema: validation error: "#" must have property "name"`, nil)
		return req, false
	}
	return req, true
}

// created makes a volume, with the data of from (a volume or snapshot) if
// set, and answers 201 with it; s.mu is held.
func (s *Server) created(sv *service, req createRequest, from string, me InstanceID, known bool) (int, any) {
	v, err := s.newVolume(sv, req)
	if err != nil {
		return errBody(500, err.Error(), nil)
	}
	if from != "" {
		if err := sv.copyData(from, v.ID); err != nil {
			return errBody(500, err.Error(), nil)
		}
	}
	return 201, view(v, 0, me, known)
}

func (s *Server) postVolumes(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	if r.URL.Query().Has("detach") {
		fail(w, 501, "detach all is not simulated", nil)
		return
	}
	req, ok := decodeCreate(w, r)
	if !ok {
		return
	}
	me, known, _ := caller(r, sv)
	s.submit(w, r, sv, "create", func() (int, any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		// The real server does not look the name up: a second create
		// with the same name is a second volume.
		return s.created(sv, req, "", me, known)
	})
}

func (s *Server) postVolume(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	me, known, err := caller(r, sv)
	if err != nil {
		write(errBody400(w, err))
		return
	}
	switch {
	case q.Has("attach"):
		var req attachRequest
		if !decode(w, r, &req) {
			return
		}
		if !known {
			fail(w, 400, "missing instance ID", map[string]string{"service": sv.cfg.Name})
			return
		}
		s.submit(w, r, sv, "attach", func() (int, any) { return s.attach(sv, id, me, req) })
	case q.Has("detach"):
		var req detachRequest
		if !decode(w, r, &req) {
			return
		}
		s.submit(w, r, sv, "detach", func() (int, any) { return s.detach(sv, id, me, known) })
	case q.Has("copy"):
		var req copyRequest
		if !decode(w, r, &req) {
			return
		}
		s.submit(w, r, sv, "copy", func() (int, any) {
			s.mu.Lock()
			defer s.mu.Unlock()
			src := sv.vols[id]
			if src == nil {
				return notFound(id)
			}
			size := src.Size
			// vfs copies no data: the new directory is empty.
			return s.created(sv, createRequest{Name: req.VolumeName, Size: &size, Opts: req.Opts}, id, me, known)
		})
	case q.Has("snapshot"):
		var req snapshotRequest
		if !decode(w, r, &req) {
			return
		}
		s.submit(w, r, sv, "snapshot", func() (int, any) {
			s.mu.Lock()
			defer s.mu.Unlock()
			src := sv.vols[id]
			if src == nil {
				return notFound(id)
			}
			n := 0
			for sv.snaps[fmt.Sprintf("%s-%03d", id, n)] != nil {
				n++
			}
			sn := &Snapshot{ID: fmt.Sprintf("%s-%03d", id, n), Name: req.SnapshotName, VolumeID: id, VolumeSize: src.Size, StartTime: time.Now().Unix(), Status: "online"}
			if err := sv.copyData(id, sn.ID); err != nil {
				return errBody(500, err.Error(), nil)
			}
			sv.snaps[sn.ID] = sn
			return 201, *sn
		})
	default:
		fail(w, 400, "unknown volume action", nil)
	}
}

func (s *Server) attach(sv *service, id string, me InstanceID, req attachRequest) (int, any) {
	s.mu.Lock()
	v := sv.vols[id]
	if v == nil {
		s.mu.Unlock()
		return notFound(id)
	}
	for _, a := range v.Attachments {
		if a.InstanceID.ID == me.ID {
			out := view(v, attachmentsRequested, me, true)
			s.mu.Unlock()
			return 200, map[string]any{"volume": out, "attachToken": a.DeviceName}
		}
	}
	var evicted []Attachment
	if sv.cfg.SingleAttach && len(v.Attachments) > 0 {
		if !req.Force {
			s.mu.Unlock()
			return errBody(500, "volume already attached to a host", map[string]string{"volumeID": id})
		}
		evicted, v.Attachments = v.Attachments, nil
	}
	size := v.Size
	s.mu.Unlock()
	if dev := sv.cfg.Devices; dev != nil {
		for _, a := range evicted {
			if err := dev.Detach(sv.cfg.Driver, a.InstanceID.ID, id); err != nil {
				return errBody(500, err.Error(), nil)
			}
		}
		if err := dev.Attach(sv.cfg.Driver, me.ID, id, size<<30); err != nil {
			return errBody(500, err.Error(), nil)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v = sv.vols[id]; v == nil {
		return notFound(id)
	}
	name := ""
	if req.NextDeviceName != nil {
		name = *req.NextDeviceName
	}
	if sv.cfg.Type == TypeNAS && sv.cfg.Export != "" {
		name = sv.cfg.Export + "/" + id
	}
	me.Service = ""
	v.Attachments = append(v.Attachments, Attachment{VolumeID: id, InstanceID: InstanceID{ID: me.ID, Driver: sv.cfg.Driver}, DeviceName: name, Status: "attached"})
	return 200, map[string]any{"volume": view(v, attachmentsRequested, me, true), "attachToken": name}
}

// detach removes every attachment of the volume, whoever asks: the
// behaviour of the real vfs driver (reference §5).
func (s *Server) detach(sv *service, id string, me InstanceID, known bool) (int, any) {
	s.mu.Lock()
	v := sv.vols[id]
	if v == nil {
		s.mu.Unlock()
		return notFound(id)
	}
	gone := v.Attachments
	v.Attachments = nil
	s.mu.Unlock()
	if dev := sv.cfg.Devices; dev != nil {
		for _, a := range gone {
			if err := dev.Detach(sv.cfg.Driver, a.InstanceID.ID, id); err != nil {
				return errBody(500, err.Error(), nil)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusResetContent, view(v, 0, me, known)
}

func (s *Server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	id := r.PathValue("id")
	s.submit(w, r, sv, "delete", func() (int, any) {
		s.mu.Lock()
		v := sv.vols[id]
		if v == nil {
			s.mu.Unlock()
			return notFound(id)
		}
		// The real server deletes an attached volume.
		delete(sv.vols, id)
		gone := v.Attachments
		s.mu.Unlock()
		if dev := sv.cfg.Devices; dev != nil {
			var errs []error
			for _, a := range gone {
				errs = append(errs, dev.Detach(sv.cfg.Driver, a.InstanceID.ID, id))
			}
			errs = append(errs, dev.Delete(id))
			if err := errors.Join(errs...); err != nil {
				return errBody(500, err.Error(), nil)
			}
		}
		if sv.cfg.VFSRoot != "" {
			dir := filepath.Join(sv.cfg.VFSRoot, "vol", id)
			if err := errors.Join(os.RemoveAll(dir), os.Remove(dir+".json")); err != nil {
				return errBody(500, err.Error(), nil)
			}
		}
		return http.StatusNoContent, nil
	})
}

func (s *Server) getSnapshots(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Snapshot{}
	for id, sn := range sv.snaps {
		out[id] = *sn
	}
	write(w, 200, out)
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := sv.snaps[r.PathValue("id")]
	if sn == nil {
		failNotFound(w, r.PathValue("id"))
		return
	}
	write(w, 200, *sn)
}

func (s *Server) postSnapshot(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	id := r.PathValue("id")
	if !r.URL.Query().Has("create") {
		fail(w, 501, "snapshot copy is not simulated", nil)
		return
	}
	req, ok := decodeCreate(w, r)
	if !ok {
		return
	}
	me, known, _ := caller(r, sv)
	s.submit(w, r, sv, "create", func() (int, any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		sn := sv.snaps[id]
		if sn == nil {
			return notFound(id)
		}
		if req.Size == nil {
			req.Size = &sn.VolumeSize
		}
		return s.created(sv, req, id, me, known)
	})
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	sv := s.svc(w, r)
	if sv == nil {
		return
	}
	id := r.PathValue("id")
	s.submit(w, r, sv, "delete", func() (int, any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if sv.snaps[id] == nil {
			return notFound(id)
		}
		delete(sv.snaps, id)
		if sv.cfg.Devices != nil {
			if err := sv.cfg.Devices.Delete(id); err != nil {
				return errBody(500, err.Error(), nil)
			}
		}
		return http.StatusResetContent, nil
	})
}
