package scaleio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// APIError is an error answer of the gateway:
// {"message":"…","httpStatusCode":500,"errorCode":N}.
type APIError struct {
	Message        string `json:"message"`
	HTTPStatusCode int    `json:"httpStatusCode"`
	ErrorCode      int    `json:"errorCode"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("gateway answered %d (errorCode %d): %s", e.HTTPStatusCode, e.ErrorCode, e.Message)
}

// client is a thin client of the ScaleIO/PowerFlex REST gateway. It logs
// in once, keeps the token, and logs in again when the gateway answers 401
// (the token expired or the gateway restarted), retrying the request once.
type client struct {
	base     *url.URL
	user     string
	password string
	http     *http.Client

	mu      sync.Mutex
	token   string
	version string // "3.6"; decides Basic or Bearer
	logins  int
}

func newClient(endpoint, user, password string, hc *http.Client) (*client, error) {
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("gateway %q: want an http(s) URL", endpoint)
	}
	return &client{base: u, user: user, password: password, http: hc}, nil
}

// unquote reads the JSON string answers of /api/login, /api/version and
// queryIdByKey, which some gateways send without quotes.
func unquote(b []byte) string {
	s := strings.TrimSpace(string(b))
	var out string
	if json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	return strings.Trim(s, `"`)
}

func (c *client) login(ctx context.Context) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/api/login", nil)
	if err != nil {
		return "", "", err
	}
	req.SetBasicAuth(c.user, c.password)
	tok, err := c.plain(req)
	if err != nil {
		return "", "", fmt.Errorf("log in to the gateway as %q: %w", c.user, err)
	}
	if tok == "" {
		return "", "", errors.New("log in to the gateway: empty token")
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/api/version", nil)
	if err != nil {
		return "", "", err
	}
	req.SetBasicAuth("", tok)
	ver, err := c.plain(req)
	if err != nil {
		return "", "", fmt.Errorf("gateway version: %w", err)
	}
	return tok, ver, nil
}

// plain sends a request whose answer is a bare JSON string.
func (c *client) plain(req *http.Request) (string, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", apiError(resp.StatusCode, body)
	}
	return unquote(body), nil
}

func apiError(code int, body []byte) error {
	e := &APIError{}
	if json.Unmarshal(body, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	e.HTTPStatusCode = code
	return e
}

// session returns the current token and API version, logging in first
// when there is none (or when stale is the token a 401 refused).
func (c *client) session(ctx context.Context, stale string) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && c.token != stale {
		return c.token, c.version, nil
	}
	tok, ver, err := c.login(ctx)
	if err != nil {
		return "", "", err
	}
	c.token, c.version = tok, ver
	c.logins++
	return tok, ver, nil
}

// bearer reports whether the API version takes Bearer tokens (4.0 on).
func bearer(version string) bool {
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	return err == nil && n >= 4
}

// do sends one API request with the token and decodes the JSON answer into
// out (if not nil). A 401 logs in again and retries once.
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	stale := ""
	for attempt := 0; ; attempt++ {
		tok, ver, err := c.session(ctx, stale)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		if bearer(ver) {
			req.Header.Set("Authorization", "Bearer "+tok)
		} else {
			req.SetBasicAuth("", tok)
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Content-Type", "application/json;version="+ver)
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			stale = tok
			continue
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return apiError(resp.StatusCode, data)
		}
		if out == nil {
			return nil
		}
		if s, ok := out.(*string); ok {
			*s = unquote(data)
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
		return nil
	}
}

// The gateway's objects, as far as the backend reads them.

type system struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type protectionDomain struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	SystemID string `json:"systemId"`
}

type storagePool struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	ProtectionDomainID string `json:"protectionDomainId"`
}

type mappedSdc struct {
	SdcID      string `json:"sdcId"`
	SdcIP      string `json:"sdcIp"`
	AccessMode string `json:"accessMode"`
}

type volume struct {
	ID               string      `json:"id"`
	Name             string      `json:"name"`
	SizeInKb         int64       `json:"sizeInKb"`
	StoragePoolID    string      `json:"storagePoolId"`
	VolumeType       string      `json:"volumeType"`
	AncestorVolumeID string      `json:"ancestorVolumeId"`
	CreationTime     int64       `json:"creationTime"`
	MappedSdcInfo    []mappedSdc `json:"mappedSdcInfo"`
}

type sdc struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	SdcGUID  string `json:"sdcGuid"`
	SystemID string `json:"systemId"`
	// MdmConnectionState is "Connected" or "Disconnected": whether the
	// MDM currently reaches the SDC.
	MdmConnectionState string `json:"mdmConnectionState"`
}

func (c *client) systems(ctx context.Context) ([]system, error) {
	var out []system
	return out, c.do(ctx, http.MethodGet, "/api/types/System/instances", nil, &out)
}

func (c *client) protectionDomains(ctx context.Context) ([]protectionDomain, error) {
	var out []protectionDomain
	return out, c.do(ctx, http.MethodGet, "/api/types/ProtectionDomain/instances", nil, &out)
}

func (c *client) storagePools(ctx context.Context, pd string) ([]storagePool, error) {
	var out []storagePool
	return out, c.do(ctx, http.MethodGet, "/api/instances/ProtectionDomain::"+url.PathEscape(pd)+"/relationships/StoragePool", nil, &out)
}

func (c *client) volume(ctx context.Context, id string) (*volume, error) {
	v := &volume{}
	return v, c.do(ctx, http.MethodGet, "/api/instances/Volume::"+url.PathEscape(id), nil, v)
}

func (c *client) volumes(ctx context.Context) ([]volume, error) {
	var out []volume
	return out, c.do(ctx, http.MethodGet, "/api/types/Volume/instances", nil, &out)
}

func (c *client) volumeIDByName(ctx context.Context, name string) (string, error) {
	var id string
	return id, c.do(ctx, http.MethodPost, "/api/types/Volume/instances/action/queryIdByKey", map[string]string{"name": name}, &id)
}

func (c *client) createVolume(ctx context.Context, pd, pool, name string, sizeKB int64, thin bool) (string, error) {
	vt := "ThickProvisioned"
	if thin {
		vt = "ThinProvisioned"
	}
	var out struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, "/api/types/Volume/instances", map[string]string{
		"protectionDomainId": pd, "storagePoolId": pool, "name": name,
		"volumeSizeInKb": strconv.FormatInt(sizeKB, 10), "volumeType": vt,
	}, &out)
	return out.ID, err
}

func (c *client) volumeAction(ctx context.Context, id, action string, in any) error {
	return c.do(ctx, http.MethodPost, "/api/instances/Volume::"+url.PathEscape(id)+"/action/"+action, in, nil)
}

func (c *client) snapshot(ctx context.Context, systemID, source, name string) (string, error) {
	var out struct {
		VolumeIDList []string `json:"volumeIdList"`
	}
	err := c.do(ctx, http.MethodPost, "/api/instances/System::"+url.PathEscape(systemID)+"/action/snapshotVolumes",
		map[string]any{"snapshotDefs": []map[string]string{{"volumeId": source, "snapshotName": name}}}, &out)
	if err != nil {
		return "", err
	}
	if len(out.VolumeIDList) != 1 {
		return "", fmt.Errorf("snapshotVolumes answered %d volume ids, want 1", len(out.VolumeIDList))
	}
	return out.VolumeIDList[0], nil
}

func (c *client) sdcs(ctx context.Context, systemID string) ([]sdc, error) {
	var out []sdc
	return out, c.do(ctx, http.MethodGet, "/api/instances/System::"+url.PathEscape(systemID)+"/relationships/Sdc", nil, &out)
}

func (c *client) poolStats(ctx context.Context, pool string) (inUseKB, limitKB int64, err error) {
	var out map[string]struct {
		CapacityInUseInKb int64 `json:"capacityInUseInKb"`
		CapacityLimitInKb int64 `json:"capacityLimitInKb"`
	}
	err = c.do(ctx, http.MethodPost, "/api/types/StoragePool/instances/action/querySelectedStatistics",
		map[string]any{"ids": []string{pool}, "properties": []string{"capacityInUseInKb", "capacityLimitInKb"}}, &out)
	if err != nil {
		return 0, 0, err
	}
	s, ok := out[pool]
	if !ok {
		return 0, 0, fmt.Errorf("statistics of storage pool %s: not in the answer", pool)
	}
	return s.CapacityInUseInKb, s.CapacityLimitInKb, nil
}
