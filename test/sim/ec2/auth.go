package ec2sim

import (
	"net/http"
	"regexp"
	"strings"
)

// Per-caller permissions, so a test can give one side of the plugin (the
// node) credentials that may do nothing, as an IAM policy would, and show
// that side never needs EC2. A caller is the access key id its SigV4
// signature names; callers without a policy may do everything.
type authState struct {
	allow map[string]map[string]bool // access key → actions it may call
	calls map[string]map[string]int  // access key → action → requests
}

var reCredential = regexp.MustCompile(`Credential=([^/,\s]+)/`)

// accessKeyOf returns the access key id of a signed request, "" for an
// unsigned one.
func accessKeyOf(r *http.Request) string {
	m := reCredential.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return r.Form.Get("X-Amz-Credential")
	}
	return m[1]
}

// Restrict gives the caller signing with accessKey permission for exactly
// the named actions (none: every call is refused). Each other call answers
// UnauthorizedOperation (HTTP 403), as EC2 does when the caller's IAM policy
// does not allow the action.
func (s *Server) Restrict(accessKey string, actions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth.allow == nil {
		s.auth.allow = map[string]map[string]bool{}
	}
	m := map[string]bool{}
	for _, a := range actions {
		m[a] = true
	}
	s.auth.allow[accessKey] = m
}

// CallsBy returns how many requests of each action the caller signing
// with accessKey has made, refused ones included.
func (s *Server) CallsBy(accessKey string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.auth.calls[accessKey] {
		out[k] = v
	}
	return out
}

// authorize counts the request for its caller and refuses it when the
// caller's policy does not allow action. Callers hold s.mu.
func (s *Server) authorize(key, action string) *apiError {
	if s.auth.calls == nil {
		s.auth.calls = map[string]map[string]int{}
	}
	if s.auth.calls[key] == nil {
		s.auth.calls[key] = map[string]int{}
	}
	s.auth.calls[key][action]++
	allowed, restricted := s.auth.allow[key]
	if !restricted || allowed[action] {
		return nil
	}
	return &apiError{Code: "UnauthorizedOperation", Status: http.StatusForbidden,
		Message: "You are not authorized to perform this operation. User: " + strings.TrimSpace(key) + " is not allowed ec2:" + action}
}

// maxFilterValues is how many filter values EC2 takes in one call, summed
// over the filters: more is InvalidParameterValue ("The maximum number of
// filter values specified on a single call is 200").
const maxFilterValues = 200

func tooManyFilterValues(fs []filter) *apiError {
	n := 0
	for _, f := range fs {
		n += len(f.values)
	}
	if n > maxFilterValues {
		return errf("InvalidParameterValue", "The maximum number of filter values specified on a single call is %d", maxFilterValues)
	}
	return nil
}
