package libstorage

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Request headers of the libStorage API (api/types/types_http_headers.go).
const (
	HeaderInstanceID   = "Libstorage-Instanceid"
	HeaderLocalDevices = "Libstorage-Localdevices"
)

// client is a thin client of one libStorage server's REST API.
type client struct {
	base    string // http://host:port or https://host:port; "http://unix" for a socket
	hc      *http.Client
	token   string
	timeout time.Duration
	poll    time.Duration
}

func newClient(cfg Config, timeout, poll time.Duration) (*client, error) {
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" && u.Path == "" {
		return nil, fmt.Errorf("host %q: want tcp://HOST:PORT, https://HOST:PORT or unix:///PATH", cfg.Host)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}
	c := &client{hc: &http.Client{Transport: tr}, timeout: timeout, poll: poll}
	scheme := "http"
	switch u.Scheme {
	case "tcp", "http":
		c.base = "http://" + u.Host
	case "https":
		c.base, scheme = "https://"+u.Host, "https"
	case "unix":
		sock := u.Path
		if sock == "" {
			return nil, fmt.Errorf("host %q: a unix host needs a socket path", cfg.Host)
		}
		c.base = "http://libstorage"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
	default:
		return nil, fmt.Errorf("host %q: scheme %q is not tcp, https or unix", cfg.Host, u.Scheme)
	}
	if t := cfg.TLS; t != nil {
		if scheme != "https" {
			return nil, fmt.Errorf("tls is set but host %q is not https://", cfg.Host)
		}
		tc := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if t.CA != "" {
			pem, err := os.ReadFile(t.CA)
			if err != nil {
				return nil, fmt.Errorf("tls.ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.ca %s holds no PEM certificate", t.CA)
			}
		}
		if (t.Cert == "") != (t.Key == "") {
			return nil, fmt.Errorf("tls.cert and tls.key go together")
		}
		if t.Cert != "" {
			pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
			if err != nil {
				return nil, fmt.Errorf("tls.cert/tls.key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		tr.TLSClientConfig = tc
	}
	if cfg.Token != "" {
		raw, err := os.ReadFile(cfg.Token)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		c.token = strings.TrimSpace(string(raw))
		if c.token == "" {
			return nil, fmt.Errorf("token file %s is empty", cfg.Token)
		}
	}
	return c, nil
}

// apiError is an error answer of the server: {"message", "status", "error"}.
type apiError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("libStorage server answered %d: %s", e.Status, e.Message)
}

// task is the server's task object (408, 202, /tasks/{id}).
type task struct {
	ID     int             `json:"id"`
	State  string          `json:"state"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// request is one call: headers carry the instance id and local devices
// the driver needs.
type request struct {
	method, path string
	query        string // raw: "attach", "attachments=1"
	instanceID   string
	localDevices string
	body         any
}

// do sends one request and decodes a 2xx answer into out. It returns the
// status code; a 408 carrying a task is returned as *pendingError.
func (c *client) do(ctx context.Context, r request, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		raw, err := json.Marshal(r.body)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(raw)
	}
	u := c.base + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.instanceID != "" {
		req.Header.Set(HeaderInstanceID, r.instanceID)
	}
	if r.localDevices != "" {
		req.Header.Set(HeaderLocalDevices, r.localDevices)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %s %s: no answer within %s: %v", backends.ErrUnavailable, r.method, r.path, c.timeout, err)
		}
		return 0, fmt.Errorf("%w: %s %s: %v", backends.ErrUnavailable, r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%w: %s %s: read answer: %v", backends.ErrUnavailable, r.method, r.path, err)
	}
	switch {
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusAccepted:
		var t task
		if err := json.Unmarshal(raw, &t); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d without a task object: %v", r.method, r.path, resp.StatusCode, err)
		}
		return resp.StatusCode, &pendingError{task: t}
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if out != nil && len(bytes.TrimSpace(raw)) > 0 && string(bytes.TrimSpace(raw)) != "null" {
			if err := json.Unmarshal(raw, out); err != nil {
				return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %v", r.method, r.path, err)
			}
		}
		return resp.StatusCode, nil
	}
	e := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(raw, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(raw))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	e.Status = resp.StatusCode
	return resp.StatusCode, classify(fmt.Errorf("%s %s: %w", r.method, r.path, e), resp.StatusCode)
}

// classify wraps the backends error a status stands for.
func classify(err error, code int) error {
	switch {
	case code == http.StatusNotFound:
		return fmt.Errorf("%w: %w", backends.ErrNotFound, err)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w: %w", backends.ErrPermission, err)
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %w", backends.ErrUnavailable, err)
	}
	return err
}

// pendingError: the server answered with a task that has not finished.
type pendingError struct{ task task }

func (e *pendingError) Error() string {
	return fmt.Sprintf("task %d is still %q on the libStorage server", e.task.ID, e.task.State)
}

// call sends a request that runs as a task on the server. When the server
// answers 408 (its task timeout passed) or 202, it follows the task.
func (c *client) call(ctx context.Context, r request, out any) (int, error) {
	code, err := c.do(ctx, r, out)
	var p *pendingError
	if !errors.As(err, &p) {
		return code, err
	}
	return http.StatusOK, c.follow(ctx, r.method+" "+r.path, p.task, out)
}

// wait follows a task an earlier call left running.
func (c *client) wait(ctx context.Context, id int, out any) error {
	return c.follow(ctx, "task "+strconv.Itoa(id), task{ID: id, State: "queued"}, out)
}

// stillRunning: a task had not ended when the call's time ran out. It
// wraps ErrUnavailable or the context's error: the CO retries (UNAVAILABLE
// or DEADLINE_EXCEEDED, never ABORTED), and the retry finds what the task
// did.
type stillRunning struct {
	id   int
	what string
	err  error
}

func (e *stillRunning) Error() string {
	return fmt.Sprintf("%s: task %d is still running on the libStorage server (it runs one task at a time per service); retry later: %v", e.what, e.id, e.err)
}

func (e *stillRunning) Unwrap() error { return e.err }

// follow polls /tasks/{id} until the task ends, or until the next poll
// would pass ctx's deadline.
func (c *client) follow(ctx context.Context, what string, t task, out any) error {
	delay := c.poll
	for {
		switch t.State {
		case "success":
			if out != nil && len(t.Result) > 0 && string(t.Result) != "null" {
				if err := json.Unmarshal(t.Result, out); err != nil {
					return fmt.Errorf("%s: task %d: decode result: %v", what, t.ID, err)
				}
			}
			return nil
		case "error":
			e := &apiError{Status: http.StatusInternalServerError}
			if json.Unmarshal(t.Error, e) != nil || e.Message == "" {
				e.Message = string(t.Error)
			}
			if e.Status == 0 {
				e.Status = http.StatusInternalServerError
			}
			return classify(fmt.Errorf("%s: task %d: %w", what, t.ID, e), e.Status)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay+c.poll {
			return &stillRunning{id: t.ID, what: what, err: backends.ErrUnavailable}
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return &stillRunning{id: t.ID, what: what, err: ctx.Err()}
		case <-timer.C:
		}
		delay = min(2*delay, 16*c.poll)
		var next task
		if _, err := c.do(ctx, request{method: http.MethodGet, path: "/tasks/" + strconv.Itoa(t.ID)}, &next); err != nil {
			if ctx.Err() != nil {
				return &stillRunning{id: t.ID, what: what, err: ctx.Err()}
			}
			return &stillRunning{id: t.ID, what: what, err: fmt.Errorf("%w: poll: %v", backends.ErrUnavailable, err)}
		}
		t = next
	}
}
