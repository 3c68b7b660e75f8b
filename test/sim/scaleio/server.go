// Package scaleiosim is a stateful, wire-level test server of the ScaleIO /
// PowerFlex REST gateway: login tokens, systems, protection domains,
// storage pools, SDCs, volumes, mappings, snapshots and pool statistics,
// with the gateway's JSON shapes and error bodies. Switches make tokens
// expire, answers slow, a call fail, or an answer get lost after the call
// took effect. A Devices implementation makes a mapped volume appear on the
// node as a real block device behind /dev/disk/by-id/emc-vol-<sys>-<vol>.
//
// Not modelled: V-trees and their limits, thick/thin capacity accounting
// beyond the size, QoS limits, the 4.x authentication service, and removal
// modes other than ONLY_ME. SDC connection states are only what
// SetSDCState sets: nothing disconnects on its own, and a disconnected
// SDC's device stays until the volume is unmapped from it.
package scaleiosim

import (
	"crypto/rand"
	"encoding/hex"
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

// Gateway error messages the plugin matches.
const (
	MsgNameInUse       = "Volume name already in use. Please use a different name."
	MsgNotFound        = "Could not find the volume"
	MsgRemoveInProcess = "A volume removal operation is currently in progress"
	MsgAlreadyMapped   = "The volume is already mapped to this SDC"
	MsgNotMapped       = "The volume is not mapped to the SDC"
)

const gib = 1 << 30

// SDC is one client host.
type SDC struct {
	ID, GUID, Name string
}

// Devices makes mapped volumes visible as block devices. The Server calls
// it with its lock held.
type Devices interface {
	Map(guid, volumeID string, sizeBytes int64) error
	Unmap(guid, volumeID string) error
	Resize(volumeID string, sizeBytes int64) error
	Delete(volumeID string) error
	// Copy gives dst the content of src (snapshots and clones).
	Copy(src, dst string) error
}

// Options configure a Server.
type Options struct {
	User, Password string
	// Version is what /api/version answers ("3.6"; "4.0" switches to
	// Bearer tokens).
	Version                    string
	SystemID, SystemName       string
	ProtectionDomain, PoolName string
	PoolCapacityBytes          int64
	SDCs                       []SDC
	Devices                    Devices
}

// Volume is the server's record of one volume, as the gateway shows it.
type Volume struct {
	ID               string      `json:"id"`
	Name             string      `json:"name"`
	SizeInKb         int64       `json:"sizeInKb"`
	StoragePoolID    string      `json:"storagePoolId"`
	VolumeType       string      `json:"volumeType"`
	AncestorVolumeID string      `json:"ancestorVolumeId,omitempty"`
	CreationTime     int64       `json:"creationTime"`
	MappedSdcInfo    []MappedSdc `json:"mappedSdcInfo"`
}

// MappedSdc is one mapping of a volume.
type MappedSdc struct {
	SdcID      string `json:"sdcId"`
	SdcIP      string `json:"sdcIp"`
	AccessMode string `json:"accessMode"`
}

// Fault is an injected failure (see simhttp.Fault).
type Fault = simhttp.Fault

// Server is the test gateway.
type Server struct {
	opt  Options
	http *httptest.Server

	simhttp.Switches

	mu      sync.Mutex
	tokens  map[string]bool
	logins  int
	volumes map[string]*Volume
	nextID  uint64
	devErrs []error
	// sdcState is each SDC's mdmConnectionState by id; absent: Connected.
	sdcState map[string]string
}

const (
	pdID   = "a0d1c2b300000000"
	poolID = "b1e2d3c400000000"
)

// New returns a stopped server.
func New(o Options) *Server {
	if o.Version == "" {
		o.Version = "3.6"
	}
	if o.SystemID == "" {
		o.SystemID = "14dbbf5617523654"
	}
	if o.PoolCapacityBytes == 0 {
		o.PoolCapacityBytes = 1 << 40
	}
	return &Server{opt: o, tokens: map[string]bool{}, volumes: map[string]*Volume{}, nextID: 0xc0ffee0000000000, sdcState: map[string]string{}}
}

// Start serves on a loopback port and returns the gateway URL.
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

// ExpireTokens forgets every token, as a gateway restart or token timeout
// does: the next call answers 401.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]bool{}
}

// Logins returns how many logins succeeded.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Volumes returns a copy of every volume, sorted by id.
func (s *Server) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Volume
	for _, v := range s.volumes {
		c := *v
		c.MappedSdcInfo = append([]MappedSdc(nil), v.MappedSdcInfo...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// DeviceErrors returns the errors the Devices implementation gave.
func (s *Server) DeviceErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.devErrs...)
}

type apiErr struct {
	Message        string `json:"message"`
	HTTPStatusCode int    `json:"httpStatusCode"`
	ErrorCode      int    `json:"errorCode"`
}

func (e *apiErr) Error() string { return e.Message }

func fail(status, code int, format string, a ...any) *apiErr {
	return &apiErr{Message: fmt.Sprintf(format, a...), HTTPStatusCode: status, ErrorCode: code}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	fault, ok := s.Before(r)
	if !ok {
		return
	}
	if fault != nil && !fault.Drop {
		write(w, fault.Status, &apiErr{Message: fault.Message, HTTPStatusCode: fault.Status})
		return
	}
	out, err := s.handle(r)
	if fault != nil && fault.Drop && simhttp.Drop(w) {
		return
	}
	if err != nil {
		write(w, err.HTTPStatusCode, err)
		return
	}
	write(w, http.StatusOK, out)
}

func write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var unauthorized = &apiErr{Message: "Unauthorized", HTTPStatusCode: http.StatusUnauthorized}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	var tok string
	if strings.HasPrefix(h, "Bearer ") {
		if !bearer(s.opt.Version) {
			return false
		}
		tok = strings.TrimPrefix(h, "Bearer ")
	} else {
		u, p, ok := r.BasicAuth()
		if !ok || u != "" || bearer(s.opt.Version) {
			return false
		}
		tok = p
	}
	return s.tokens[tok]
}

// basicToken: the version call is how a client learns which scheme to use,
// so it is answered with a Basic token too.
func (s *Server) basicToken(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	return ok && u == "" && s.tokens[p]
}

func bearer(version string) bool {
	major, _, _ := strings.Cut(version, ".")
	n, _ := strconv.Atoi(major)
	return n >= 4
}

func (s *Server) handle(r *http.Request) (any, *apiErr) {
	var body map[string]any
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return nil, fail(http.StatusBadRequest, 0, "Request body is not valid JSON: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	if p == "/api/login" {
		u, pw, ok := r.BasicAuth()
		if !ok || u != s.opt.User || pw != s.opt.Password {
			return nil, unauthorized
		}
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		tok := hex.EncodeToString(b)
		s.tokens[tok] = true
		s.logins++
		return tok, nil
	}
	if !s.authorized(r) && !(p == "/api/version" && s.basicToken(r)) {
		return nil, unauthorized
	}
	get := r.Method == http.MethodGet
	switch {
	case get && p == "/api/version":
		return s.opt.Version, nil
	case get && p == "/api/types/System/instances":
		return []map[string]string{{"id": s.opt.SystemID, "name": s.opt.SystemName}}, nil
	case get && p == "/api/types/ProtectionDomain/instances":
		return []map[string]string{{"id": pdID, "name": s.opt.ProtectionDomain, "systemId": s.opt.SystemID}}, nil
	case get && p == "/api/instances/ProtectionDomain::"+pdID+"/relationships/StoragePool":
		return []map[string]string{{"id": poolID, "name": s.opt.PoolName, "protectionDomainId": pdID}}, nil
	case get && p == "/api/instances/System::"+s.opt.SystemID+"/relationships/Sdc":
		out := []map[string]any{}
		for _, c := range s.opt.SDCs {
			out = append(out, map[string]any{"id": c.ID, "name": c.Name, "sdcGuid": c.GUID, "systemId": s.opt.SystemID, "mdmConnectionState": s.stateOf(c.ID), "sdcIps": []string{"127.0.0.1"}})
		}
		return out, nil
	case get && p == "/api/types/Volume/instances":
		out := []*Volume{}
		for _, v := range s.volumes {
			out = append(out, v)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		return out, nil
	case get && strings.HasPrefix(p, "/api/instances/Volume::"):
		v, ok := s.volumes[strings.TrimPrefix(p, "/api/instances/Volume::")]
		if !ok {
			return nil, fail(http.StatusInternalServerError, 79, MsgNotFound)
		}
		return v, nil
	case !get && p == "/api/types/Volume/instances":
		return s.create(body)
	case !get && p == "/api/types/Volume/instances/action/queryIdByKey":
		for _, v := range s.volumes {
			if v.Name == str(body, "name") {
				return v.ID, nil
			}
		}
		return nil, fail(http.StatusInternalServerError, 79, MsgNotFound)
	case !get && p == "/api/types/StoragePool/instances/action/querySelectedStatistics":
		var used int64
		for _, v := range s.volumes {
			used += v.SizeInKb
		}
		return map[string]map[string]int64{poolID: {"capacityInUseInKb": used, "capacityLimitInKb": s.opt.PoolCapacityBytes / 1024}}, nil
	case !get && p == "/api/instances/System::"+s.opt.SystemID+"/action/snapshotVolumes":
		return s.snapshot(body)
	case !get && strings.HasPrefix(p, "/api/instances/Volume::"):
		id, action, ok := strings.Cut(strings.TrimPrefix(p, "/api/instances/Volume::"), "/action/")
		if !ok {
			break
		}
		v, ok := s.volumes[id]
		if !ok {
			return nil, fail(http.StatusInternalServerError, 79, MsgNotFound)
		}
		return s.action(v, action, body)
	}
	return nil, fail(http.StatusNotFound, 0, "No such API: %s %s", r.Method, p)
}

func str(body map[string]any, k string) string {
	s, _ := body[k].(string)
	return s
}

func (s *Server) newID() string {
	s.nextID++
	return fmt.Sprintf("%016x", s.nextID)
}

func (s *Server) nameFree(name string) *apiErr {
	if name == "" || len(name) > 31 {
		return fail(http.StatusBadRequest, 0, "Volume name must be 1 to 31 characters")
	}
	for _, v := range s.volumes {
		if v.Name == name {
			return fail(http.StatusInternalServerError, 6, MsgNameInUse)
		}
	}
	return nil
}

func (s *Server) used() int64 {
	var n int64
	for _, v := range s.volumes {
		n += v.SizeInKb * 1024
	}
	return n
}

func (s *Server) create(body map[string]any) (any, *apiErr) {
	for _, k := range []string{"protectionDomainId", "storagePoolId", "volumeSizeInKb", "name"} {
		if _, ok := body[k].(string); !ok {
			return nil, fail(http.StatusBadRequest, 0, "%s must be given as a string", k)
		}
	}
	if str(body, "protectionDomainId") != pdID || str(body, "storagePoolId") != poolID {
		return nil, fail(http.StatusInternalServerError, 0, "Could not find the storage pool")
	}
	kb, err := strconv.ParseInt(str(body, "volumeSizeInKb"), 10, 64)
	if err != nil || kb <= 0 {
		return nil, fail(http.StatusBadRequest, 0, "volumeSizeInKb must be a positive number")
	}
	if e := s.nameFree(str(body, "name")); e != nil {
		return nil, e
	}
	size := (kb*1024 + 8*gib - 1) / (8 * gib) * 8 * gib // 8 GiB granularity
	if s.used()+size > s.opt.PoolCapacityBytes {
		return nil, fail(http.StatusInternalServerError, 0, "Not enough capacity in the storage pool")
	}
	vt := str(body, "volumeType")
	if vt == "" {
		vt = "ThinProvisioned"
	}
	v := &Volume{ID: s.newID(), Name: str(body, "name"), SizeInKb: size / 1024, StoragePoolID: poolID, VolumeType: vt, CreationTime: time.Now().Unix(), MappedSdcInfo: []MappedSdc{}}
	s.volumes[v.ID] = v
	return map[string]string{"id": v.ID}, nil
}

func (s *Server) snapshot(body map[string]any) (any, *apiErr) {
	defs, _ := body["snapshotDefs"].([]any)
	if len(defs) == 0 {
		return nil, fail(http.StatusBadRequest, 0, "snapshotDefs is required")
	}
	var ids []string
	for _, d := range defs {
		m, _ := d.(map[string]any)
		src, ok := s.volumes[str(m, "volumeId")]
		if !ok {
			return nil, fail(http.StatusInternalServerError, 79, MsgNotFound)
		}
		if e := s.nameFree(str(m, "snapshotName")); e != nil {
			return nil, e
		}
		v := &Volume{ID: s.newID(), Name: str(m, "snapshotName"), SizeInKb: src.SizeInKb, StoragePoolID: src.StoragePoolID, VolumeType: src.VolumeType,
			AncestorVolumeID: src.ID, CreationTime: time.Now().Unix(), MappedSdcInfo: []MappedSdc{}}
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Copy(src.ID, v.ID); err != nil {
				return nil, fail(http.StatusInternalServerError, 0, "snapshot: %v", err)
			}
		}
		s.volumes[v.ID] = v
		ids = append(ids, v.ID)
	}
	return map[string]any{"volumeIdList": ids, "snapshotGroupId": s.newID()}, nil
}

// SDC connection states the gateway reports (mdmConnectionState).
const (
	SDCConnected    = "Connected"
	SDCDisconnected = "Disconnected"
)

// SetSDCState sets the mdmConnectionState the gateway reports for the SDC
// with this id or GUID, as the MDM would when the host dies or comes back.
// Mappings and devices stay as they are: an unmap is what fences an SDC.
func (s *Server) SetSDCState(idOrGUID, state string) error {
	if state != SDCConnected && state != SDCDisconnected {
		return fmt.Errorf("scaleiosim: SDC state %q: want %s or %s", state, SDCConnected, SDCDisconnected)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.opt.SDCs {
		if c.ID == idOrGUID || strings.EqualFold(c.GUID, idOrGUID) {
			s.sdcState[c.ID] = state
			return nil
		}
	}
	return fmt.Errorf("scaleiosim: no SDC %s", idOrGUID)
}

func (s *Server) stateOf(id string) string {
	if st, ok := s.sdcState[id]; ok {
		return st
	}
	return SDCConnected
}

func (s *Server) sdc(id string) (SDC, bool) {
	for _, c := range s.opt.SDCs {
		if c.ID == id {
			return c, true
		}
	}
	return SDC{}, false
}

func (s *Server) action(v *Volume, action string, body map[string]any) (any, *apiErr) {
	switch action {
	case "addMappedSdc":
		c, ok := s.sdc(str(body, "sdcId"))
		if !ok {
			return nil, fail(http.StatusInternalServerError, 0, "Could not find the SDC")
		}
		for _, m := range v.MappedSdcInfo {
			if m.SdcID == c.ID {
				return nil, fail(http.StatusInternalServerError, 81, MsgAlreadyMapped)
			}
		}
		if len(v.MappedSdcInfo) > 0 && str(body, "allowMultipleMappings") != "TRUE" {
			return nil, fail(http.StatusInternalServerError, 0, "The volume is already mapped to another SDC; use allowMultipleMappings")
		}
		mode := str(body, "accessMode")
		if mode == "" {
			mode = "ReadWrite"
		}
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Map(c.GUID, v.ID, v.SizeInKb*1024); err != nil {
				s.devErrs = append(s.devErrs, err)
				return nil, fail(http.StatusInternalServerError, 0, "map: %v", err)
			}
		}
		v.MappedSdcInfo = append(v.MappedSdcInfo, MappedSdc{SdcID: c.ID, SdcIP: "127.0.0.1", AccessMode: mode})
		return map[string]any{}, nil
	case "removeMappedSdc":
		c, ok := s.sdc(str(body, "sdcId"))
		if !ok {
			return nil, fail(http.StatusInternalServerError, 0, "Could not find the SDC")
		}
		for i, m := range v.MappedSdcInfo {
			if m.SdcID == c.ID {
				if s.opt.Devices != nil {
					if err := s.opt.Devices.Unmap(c.GUID, v.ID); err != nil {
						s.devErrs = append(s.devErrs, err)
					}
				}
				v.MappedSdcInfo = append(v.MappedSdcInfo[:i], v.MappedSdcInfo[i+1:]...)
				return map[string]any{}, nil
			}
		}
		return nil, fail(http.StatusInternalServerError, 84, MsgNotMapped)
	case "removeVolume":
		if str(body, "removeMode") != "ONLY_ME" {
			return nil, fail(http.StatusBadRequest, 0, "removeMode %q is not modelled", str(body, "removeMode"))
		}
		if len(v.MappedSdcInfo) > 0 {
			return nil, fail(http.StatusInternalServerError, 0, "The volume is mapped to an SDC and cannot be removed")
		}
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Delete(v.ID); err != nil {
				s.devErrs = append(s.devErrs, err)
			}
		}
		delete(s.volumes, v.ID)
		return map[string]any{}, nil
	case "setVolumeSize":
		gb, err := strconv.ParseInt(str(body, "sizeInGB"), 10, 64)
		if err != nil || gb <= 0 || gb%8 != 0 {
			return nil, fail(http.StatusBadRequest, 0, "sizeInGB must be a positive multiple of 8")
		}
		if gb*gib < v.SizeInKb*1024 {
			return nil, fail(http.StatusBadRequest, 0, "A volume cannot be shrunk")
		}
		if s.used()+gb*gib-v.SizeInKb*1024 > s.opt.PoolCapacityBytes {
			return nil, fail(http.StatusInternalServerError, 0, "Not enough capacity in the storage pool")
		}
		v.SizeInKb = gb * gib / 1024
		if s.opt.Devices != nil {
			if err := s.opt.Devices.Resize(v.ID, gb*gib); err != nil {
				s.devErrs = append(s.devErrs, err)
			}
		}
		return map[string]any{}, nil
	case "setVolumeName":
		if e := s.nameFree(str(body, "newName")); e != nil {
			return nil, e
		}
		v.Name = str(body, "newName")
		return map[string]any{}, nil
	}
	return nil, fail(http.StatusNotFound, 0, "No such action: %s", action)
}
