package scaleio

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/restutil"
)

// Messages the gateway answers with that the backend acts on. The gateway
// has few stable error codes, so, like the vendor's driver, the backend
// matches the text.
const (
	msgNameInUse       = "Volume name already in use"
	msgNotFound        = "Could not find the volume"
	msgRemoveInProcess = "A volume removal operation is currently in progress"
	msgAlreadyMapped   = "already mapped"
	msgNotMapped       = "not mapped"
)

// errorTable maps gateway answers to the backend's errors, first match
// wins.
var errorTable = []struct {
	match func(*APIError) bool
	err   error
}{
	{func(e *APIError) bool { return strings.Contains(e.Message, msgNotFound) || e.ErrorCode == 78 }, backends.ErrNotFound},
	{func(e *APIError) bool { return strings.Contains(e.Message, msgRemoveInProcess) }, backends.ErrUnavailable},
	{func(e *APIError) bool {
		return e.HTTPStatusCode == http.StatusUnauthorized || e.HTTPStatusCode == http.StatusForbidden ||
			strings.Contains(strings.ToLower(e.Message), "permission")
	}, backends.ErrPermission},
	{func(e *APIError) bool { return strings.Contains(strings.ToLower(e.Message), "capacity") }, backends.ErrCapacity},
	{func(e *APIError) bool {
		return e.HTTPStatusCode == http.StatusServiceUnavailable || e.HTTPStatusCode == http.StatusBadGateway ||
			e.HTTPStatusCode == http.StatusGatewayTimeout || e.HTTPStatusCode == http.StatusTooManyRequests
	}, backends.ErrUnavailable},
}

// mapErr wraps a client error with what was being done and the backend
// error that gives the caller the right gRPC code.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var api *APIError
	if errors.As(err, &api) {
		for _, row := range errorTable {
			if row.match(api) {
				return fmt.Errorf("%s: %w: %s", what, row.err, api.Message)
			}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if restutil.Transient(err) {
		return fmt.Errorf("%s: %w: %v", what, backends.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isAPI(err error, text string) bool {
	var api *APIError
	return errors.As(err, &api) && strings.Contains(api.Message, text)
}
