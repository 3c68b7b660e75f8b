// Package xtremiosim is a stateful, wire-level test server of the XtremIO
// XMS REST API (v3 and v2 paths, or v2 only): volumes, snapshots,
// initiator groups, initiators, lun-maps and cluster space, with HTTP Basic
// on every request, the XMS's JSON shapes ({"content":…}, 201 with links,
// [guid, name, index] ids, sizes in KB as strings) and its error bodies
// ({"message":"obj_not_found","error_code":400}). Switches make answers
// slow, a call fail ("system_is_busy"), or an answer get lost after the call
// took effect. A Devices implementation makes a mapped volume a real loop
// device behind /dev/disk/by-id/wwn-0x<naa>, with the fake sysfs WWID the
// node's identity check reads.
//
// Not modelled: iSCSI portals and targets, CHAP, target groups other than
// the default, consistency groups and snapshot sets as objects, tags,
// XMS-side user roles (permission errors are injected), performance
// counters, and the v3 GUID hrefs (hrefs end in the index).
package xtremiosim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/csi-libstorage/csi-libstorage/test/sim/simhttp"
)

// Devices makes mapped volumes visible as block devices. The Server calls
// it with its lock held.
type Devices interface {
	Map(group, naa string, index int, sizeBytes int64) error
	Unmap(group, naa string, index int) error
	Resize(index int, sizeBytes int64) error
	Delete(index int) error
	Copy(src, dst int) error
}

// Options configure a Server.
type Options struct {
	User, Password string
	// V2Only answers 404 on v3 paths (an XMS 4).
	V2Only bool
	// Cluster, when set, is required in every call (a multi-cluster XMS).
	Cluster       string
	CapacityBytes int64
	Devices       Devices
}

// Volume is the server's record of a volume or snapshot.
type Volume struct {
	Index    int
	Name     string
	SizeKB   int64
	NAA      string
	Ancestor int
	Created  time.Time
	Maps     map[string]int // initiator group → lun
}

// Fault is an injected failure (see simhttp.Fault).
type Fault = simhttp.Fault

type group struct {
	index      int
	name       string
	initiators []string
}

// Server is the test XMS.
type Server struct {
	opt  Options
	http *httptest.Server

	simhttp.Switches

	mu       sync.Mutex
	volumes  map[int]*Volume
	groups   map[string]*group
	next     int
	devErrs  []error
	requests int
}

// New returns a stopped server.
func New(o Options) *Server {
	if o.CapacityBytes == 0 {
		o.CapacityBytes = 1 << 40
	}
	return &Server{opt: o, volumes: map[int]*Volume{}, groups: map[string]*group{}}
}

// Start serves on a loopback port and returns the XMS URL.
func (s *Server) Start() string {
	s.http = httptest.NewServer(http.HandlerFunc(s.serve))
	return s.http.URL
}

// Close stops the server.
func (s *Server) Close() {
	if s.http != nil {
		s.http.CloseClientConnections()
		s.http.Close()
	}
}

// Volumes returns a copy of every volume and snapshot, by index.
func (s *Server) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Volume
	for _, v := range s.volumes {
		c := *v
		c.Maps = map[string]int{}
		for k, l := range v.Maps {
			c.Maps[k] = l
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Groups returns each initiator group's initiators (port addresses).
func (s *Server) Groups() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for n, g := range s.groups {
		out[n] = append([]string{}, g.initiators...)
	}
	return out
}

// AddGroup creates an initiator group, as an administrator would.
func (s *Server) AddGroup(name string, initiators ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.groups[name] = &group{index: s.next, name: name, initiators: initiators}
}

// DeviceErrors returns the errors the Devices implementation gave.
func (s *Server) DeviceErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.devErrs...)
}

type apiErr struct {
	status    int
	Message   string `json:"message"`
	ErrorCode int    `json:"error_code"`
}

func fail(status int, msg string) *apiErr {
	return &apiErr{status: status, Message: msg, ErrorCode: status}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	fault, ok := s.Before(r)
	if !ok {
		return
	}
	if fault != nil && !fault.Drop {
		write(w, fault.Status, fail(fault.Status, fault.Message))
		return
	}
	status, out, err := s.handle(r)
	if fault != nil && fault.Drop && simhttp.Drop(w) {
		return
	}
	if err != nil {
		write(w, err.status, err)
		return
	}
	write(w, status, out)
}

func write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func (s *Server) handle(r *http.Request) (int, any, *apiErr) {
	u, p, ok := r.BasicAuth()
	if !ok || u != s.opt.User || p != s.opt.Password {
		return 0, nil, fail(http.StatusUnauthorized, "Unauthorized")
	}
	path := r.URL.Path
	var ver string
	switch {
	case strings.HasPrefix(path, "/api/json/v3/types") && !s.opt.V2Only:
		ver = "v3"
	case strings.HasPrefix(path, "/api/json/v2/types"):
		ver = "v2"
	default:
		return 0, nil, fail(http.StatusNotFound, "not_found")
	}
	typ := strings.Trim(strings.TrimPrefix(path, "/api/json/"+ver+"/types"), "/")
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return 0, nil, fail(http.StatusBadRequest, "bad_json")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if typ == "" {
		return http.StatusOK, map[string]any{"children": []map[string]string{{"name": "volumes"}, {"name": "lun-maps"}}}, nil
	}
	if s.opt.Cluster != "" {
		c := r.URL.Query().Get("cluster-name")
		if body != nil {
			c, _ = body["cluster-id"].(string)
		}
		if c != s.opt.Cluster {
			return 0, nil, fail(http.StatusBadRequest, "cluster_id_is_required")
		}
	}
	href := func(t string, i int) string { return fmt.Sprintf("http://xms/api/json/%s/types/%s/%d", ver, t, i) }
	q := r.URL.Query()
	kind, idx, _ := strings.Cut(typ, "/")
	switch {
	case kind == "volumes" && r.Method == http.MethodGet && idx != "":
		n, _ := strconv.Atoi(idx)
		v, ok := s.volumes[n]
		if !ok {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		return http.StatusOK, map[string]any{"content": s.content(v, ver)}, nil
	case kind == "volumes" && r.Method == http.MethodGet && q.Get("name") != "":
		v := s.byName(q.Get("name"))
		if v == nil {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		return http.StatusOK, map[string]any{"content": s.content(v, ver)}, nil
	case kind == "volumes" && r.Method == http.MethodGet:
		list := []any{}
		for _, i := range s.indexes() {
			v := s.volumes[i]
			if q.Get("full") == "1" {
				list = append(list, s.content(v, ver))
			} else {
				list = append(list, map[string]string{"href": href("volumes", v.Index), "name": v.Name})
			}
		}
		return http.StatusOK, map[string]any{"volumes": list, "links": []any{}}, nil
	case kind == "volumes" && r.Method == http.MethodPost:
		name, _ := body["vol-name"].(string)
		kb, err := parseSize(body["vol-size"])
		if name == "" || err != nil {
			return 0, nil, fail(http.StatusBadRequest, "invalid_input")
		}
		if s.byName(name) != nil {
			return 0, nil, fail(http.StatusBadRequest, "vol_obj_name_not_unique")
		}
		if s.usedKB()+kb > s.opt.CapacityBytes/1024 {
			return 0, nil, fail(http.StatusBadRequest, "no_space_left")
		}
		v := s.add(name, kb, 0)
		return http.StatusCreated, map[string]any{"links": []map[string]string{{"href": href("volumes", v.Index), "rel": "self"}}}, nil
	case kind == "volumes" && r.Method == http.MethodPut:
		v := s.byName(q.Get("name"))
		if v == nil {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		if n, ok := body["vol-name"].(string); ok {
			if s.byName(n) != nil {
				return 0, nil, fail(http.StatusBadRequest, "vol_obj_name_not_unique")
			}
			v.Name = n
		}
		if body["vol-size"] != nil {
			kb, err := parseSize(body["vol-size"])
			if err != nil || kb < v.SizeKB {
				return 0, nil, fail(http.StatusBadRequest, "invalid_input")
			}
			v.SizeKB = kb
			if s.opt.Devices != nil {
				if err := s.opt.Devices.Resize(v.Index, kb*1024); err != nil {
					s.devErrs = append(s.devErrs, err)
				}
			}
		}
		return http.StatusOK, nil, nil
	case kind == "volumes" && r.Method == http.MethodDelete:
		v := s.byName(q.Get("name"))
		if v == nil {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		if len(v.Maps) > 0 {
			return 0, nil, fail(http.StatusBadRequest, "vol_in_use_by_lun_map")
		}
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Delete(v.Index); err != nil {
				s.devErrs = append(s.devErrs, err)
			}
		}
		delete(s.volumes, v.Index)
		return http.StatusOK, nil, nil
	case kind == "snapshots" && r.Method == http.MethodPost:
		list, _ := body["volume-list"].([]any)
		suffix, _ := body["snap-suffix"].(string)
		if len(list) != 1 || suffix == "" {
			return 0, nil, fail(http.StatusBadRequest, "invalid_input")
		}
		name, _ := list[0].(string)
		src := s.byName(name)
		if src == nil {
			return 0, nil, fail(http.StatusBadRequest, "vol_obj_not_found")
		}
		if s.byName(name+"."+suffix) != nil {
			return 0, nil, fail(http.StatusBadRequest, "vol_obj_name_not_unique")
		}
		v := s.add(name+"."+suffix, src.SizeKB, src.Index)
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Copy(src.Index, v.Index); err != nil {
				delete(s.volumes, v.Index)
				return 0, nil, fail(http.StatusInternalServerError, err.Error())
			}
		}
		return http.StatusCreated, map[string]any{"links": []map[string]string{{"href": href("snapshots", v.Index), "rel": "self"}}}, nil
	case kind == "initiator-groups" && r.Method == http.MethodGet:
		g, ok := s.groups[q.Get("name")]
		if !ok {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		return http.StatusOK, map[string]any{"content": map[string]any{"name": g.name, "index": g.index, "ig-id": []any{fmt.Sprintf("%032x", g.index), g.name, g.index}}}, nil
	case kind == "initiator-groups" && r.Method == http.MethodPost:
		n, _ := body["ig-name"].(string)
		if n == "" {
			return 0, nil, fail(http.StatusBadRequest, "invalid_input")
		}
		if _, ok := s.groups[n]; ok {
			return 0, nil, fail(http.StatusBadRequest, "ig_name_not_unique")
		}
		s.next++
		s.groups[n] = &group{index: s.next, name: n}
		return http.StatusCreated, map[string]any{"links": []map[string]string{{"href": href("initiator-groups", s.next), "rel": "self"}}}, nil
	case kind == "initiators" && r.Method == http.MethodPost:
		ig, _ := body["ig-id"].(string)
		port, _ := body["port-address"].(string)
		g, ok := s.groups[ig]
		if !ok || port == "" {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		for _, o := range s.groups {
			for _, p := range o.initiators {
				if p == port {
					return 0, nil, fail(http.StatusBadRequest, "initiator_port_address_already_exists")
				}
			}
		}
		g.initiators = append(g.initiators, port)
		s.next++
		return http.StatusCreated, map[string]any{"links": []map[string]string{{"href": href("initiators", s.next), "rel": "self"}}}, nil
	case kind == "lun-maps" && r.Method == http.MethodPost:
		vn, _ := body["vol-id"].(string)
		ig, _ := body["ig-id"].(string)
		v, g := s.byName(vn), s.groups[ig]
		if v == nil || g == nil {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		if _, ok := v.Maps[ig]; ok {
			return 0, nil, fail(http.StatusBadRequest, "vol_already_mapped")
		}
		lun := s.freeLUN(ig)
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Map(ig, v.NAA, v.Index, v.SizeKB*1024); err != nil {
				s.devErrs = append(s.devErrs, err)
				return 0, nil, fail(http.StatusInternalServerError, err.Error())
			}
		}
		v.Maps[ig] = lun
		return http.StatusCreated, map[string]any{"links": []map[string]string{{"href": href("lun-maps", v.Index*1000+g.index), "rel": "self"}}}, nil
	case kind == "lun-maps" && r.Method == http.MethodDelete:
		var vi, gi, ti int
		if _, err := fmt.Sscanf(q.Get("name"), "%d_%d_%d", &vi, &gi, &ti); err != nil || ti != 1 {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		v := s.volumes[vi]
		for n, g := range s.groups {
			if v != nil && g.index == gi {
				if _, ok := v.Maps[n]; ok {
					if s.opt.Devices != nil {
						if err := s.opt.Devices.Unmap(n, v.NAA, v.Index); err != nil {
							s.devErrs = append(s.devErrs, err)
						}
					}
					delete(v.Maps, n)
					return http.StatusOK, nil, nil
				}
			}
		}
		return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
	case kind == "clusters" && r.Method == http.MethodGet:
		if (idx != "" && idx != "1") || (q.Get("name") != "" && q.Get("name") != s.opt.Cluster) {
			return 0, nil, fail(http.StatusBadRequest, "obj_not_found")
		}
		return http.StatusOK, map[string]any{"content": map[string]any{
			"name": s.opt.Cluster, "ud-ssd-space": strconv.FormatInt(s.opt.CapacityBytes/1024, 10), "ud-ssd-space-in-use": strconv.FormatInt(s.usedKB(), 10)}}, nil
	}
	return 0, nil, fail(http.StatusBadRequest, "invalid_request")
}

func (s *Server) indexes() []int {
	var out []int
	for i := range s.volumes {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

func (s *Server) byName(n string) *Volume {
	for _, v := range s.volumes {
		if v.Name == n {
			return v
		}
	}
	return nil
}

func (s *Server) usedKB() int64 {
	var n int64
	for _, v := range s.volumes {
		n += v.SizeKB
	}
	return n
}

func (s *Server) freeLUN(ig string) int {
	used := map[int]bool{}
	for _, v := range s.volumes {
		if l, ok := v.Maps[ig]; ok {
			used[l] = true
		}
	}
	for l := 1; ; l++ {
		if !used[l] {
			return l
		}
	}
}

func (s *Server) add(name string, kb int64, ancestor int) *Volume {
	s.next++
	v := &Volume{Index: s.next, Name: name, SizeKB: kb, NAA: fmt.Sprintf("514f0c5%09x", s.next), Ancestor: ancestor, Created: time.Now(), Maps: map[string]int{}}
	s.volumes[v.Index] = v
	return v
}

// parseSize reads "10g", "10240m", "1t" into KB.
func parseSize(v any) (int64, error) {
	str, _ := v.(string)
	if len(str) < 2 {
		return 0, fmt.Errorf("size %q", str)
	}
	n, err := strconv.ParseInt(str[:len(str)-1], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q", str)
	}
	switch strings.ToLower(str[len(str)-1:]) {
	case "m":
		return n << 10, nil
	case "g":
		return n << 20, nil
	case "t":
		return n << 30, nil
	}
	return 0, fmt.Errorf("size %q", str)
}

func (s *Server) content(v *Volume, ver string) map[string]any {
	maps := []any{}
	groups := make([]string, 0, len(v.Maps))
	for g := range v.Maps {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		gr := s.groups[g]
		maps = append(maps, []any{[]any{fmt.Sprintf("%032x", gr.index), g, gr.index}, []any{"tg-guid", "Default", 1}, v.Maps[g]})
	}
	out := map[string]any{
		"name": v.Name, "index": v.Index, "vol-size": strconv.FormatInt(v.SizeKB, 10), "naa-name": v.NAA,
		"vol-id": []any{fmt.Sprintf("%032x", v.Index), v.Name, v.Index}, "lun-mapping-list": maps,
		"creation-time": v.Created.UTC().Format("2006-01-02 15:04:05"),
	}
	if v.Ancestor != 0 {
		if a, ok := s.volumes[v.Ancestor]; ok {
			out["ancestor-vol-id"] = []any{fmt.Sprintf("%032x", a.Index), a.Name, a.Index}
		} else {
			out["ancestor-vol-id"] = []any{"", "", v.Ancestor}
		}
	}
	return out
}
