package xtremio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// APIError is an error answer of the XMS: {"message":"obj_not_found","error_code":400}.
type APIError struct {
	Status    int    `json:"-"`
	Message   string `json:"message"`
	ErrorCode int    `json:"error_code"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("XMS answered %d: %s", e.Status, e.Message)
}

// client is a thin client of the XtremIO XMS REST API: HTTP Basic on every
// request, v3 paths where the XMS has them (XMS 6), else v2 (XMS 4), and the
// cluster named on every call for an XMS that manages several clusters.
type client struct {
	base     string
	user     string
	password string
	cluster  string
	http     *http.Client

	mu      sync.Mutex
	version string // "v3" or "v2", found on first use
}

func newClient(endpoint, user, password, cluster string, hc *http.Client) (*client, error) {
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("xms %q: want an http(s) URL", endpoint)
	}
	return &client{base: u.String(), user: user, password: password, cluster: cluster, http: hc}, nil
}

func (c *client) send(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(c.user, c.password)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, data, err
}

// apiVersion finds, once, whether the XMS serves v3 (else v2).
func (c *client) apiVersion(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != "" {
		return c.version, nil
	}
	code, data, err := c.send(ctx, http.MethodGet, "/api/json/v3/types", nil)
	if err != nil {
		return "", err
	}
	switch {
	case code == http.StatusOK:
		c.version = "v3"
	case code == http.StatusNotFound:
		c.version = "v2"
	default:
		return "", apiError(code, data)
	}
	return c.version, nil
}

func apiError(code int, body []byte) error {
	e := &APIError{}
	if json.Unmarshal(body, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	e.Status = code
	return e
}

// do calls typ (volumes, lun-maps, …) with the query q; in is sent as the
// JSON body with the cluster added; out receives the JSON answer.
func (c *client) do(ctx context.Context, method, typ string, q url.Values, in map[string]any, out any) error {
	ver, err := c.apiVersion(ctx)
	if err != nil {
		return err
	}
	if q == nil {
		q = url.Values{}
	}
	var body []byte
	if in != nil {
		if c.cluster != "" {
			in["cluster-id"] = c.cluster
		}
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	} else if c.cluster != "" {
		q.Set("cluster-name", c.cluster)
	}
	path := "/api/json/" + ver + "/types/" + typ
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	code, data, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	if code < 200 || code > 299 {
		return apiError(code, data)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, typ, err)
	}
	return nil
}

// objID is the XMS's [guid, name, index] triple.
type objID []any

func (o objID) name() string {
	if len(o) > 1 {
		s, _ := o[1].(string)
		return s
	}
	return ""
}

func (o objID) index() int {
	if len(o) > 2 {
		if f, ok := o[2].(float64); ok {
			return int(f)
		}
	}
	return 0
}

type volume struct {
	Name           string  `json:"name"`
	VolSize        string  `json:"vol-size"` // KB, as a string
	NAA            string  `json:"naa-name"`
	Index          int     `json:"index"`
	VolID          objID   `json:"vol-id"`
	AncestorVolID  objID   `json:"ancestor-vol-id"`
	CreationTime   string  `json:"creation-time"`
	LunMappingList [][]any `json:"lun-mapping-list"`
}

func (v *volume) sizeBytes() int64 {
	kb, _ := strconv.ParseInt(v.VolSize, 10, 64)
	return kb * 1024
}

// mappings returns (initiator group name, lun) of each lun-map.
func (v *volume) mappings() map[string]int {
	out := map[string]int{}
	for _, m := range v.LunMappingList {
		if len(m) < 3 {
			continue
		}
		ig, _ := m[0].([]any)
		lun, _ := m[2].(float64)
		out[objID(ig).name()] = int(lun)
	}
	return out
}

func (c *client) volume(ctx context.Context, name string) (*volume, error) {
	var out struct {
		Content volume `json:"content"`
	}
	err := c.do(ctx, http.MethodGet, "volumes", url.Values{"name": {name}}, nil, &out)
	return &out.Content, err
}

func (c *client) volumes(ctx context.Context) ([]volume, error) {
	var out struct {
		Volumes []volume `json:"volumes"`
	}
	err := c.do(ctx, http.MethodGet, "volumes", url.Values{"full": {"1"}}, nil, &out)
	return out.Volumes, err
}

type initiatorGroup struct {
	Name string `json:"name"`
	IGID objID  `json:"ig-id"`
}

func (c *client) initiatorGroup(ctx context.Context, name string) (*initiatorGroup, error) {
	var out struct {
		Content initiatorGroup `json:"content"`
	}
	err := c.do(ctx, http.MethodGet, "initiator-groups", url.Values{"name": {name}}, nil, &out)
	return &out.Content, err
}

func (c *client) volumeByIndex(ctx context.Context, index string) (*volume, error) {
	var out struct {
		Content volume `json:"content"`
	}
	err := c.do(ctx, http.MethodGet, "volumes/"+url.PathEscape(index), nil, nil, &out)
	return &out.Content, err
}
