package scaleio

import (
	"errors"
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
var errorTable = []restutil.Rule[*APIError]{
	{Match: func(e *APIError) bool { return strings.Contains(e.Message, msgNotFound) || e.ErrorCode == 78 }, Err: backends.ErrNotFound},
	{Match: func(e *APIError) bool { return strings.Contains(e.Message, msgRemoveInProcess) }, Err: backends.ErrUnavailable},
	{Match: func(e *APIError) bool {
		return e.HTTPStatusCode == http.StatusUnauthorized || e.HTTPStatusCode == http.StatusForbidden ||
			strings.Contains(strings.ToLower(e.Message), "permission")
	}, Err: backends.ErrPermission},
	{Match: func(e *APIError) bool { return strings.Contains(strings.ToLower(e.Message), "capacity") }, Err: backends.ErrCapacity},
	{Match: func(e *APIError) bool {
		return e.HTTPStatusCode == http.StatusServiceUnavailable || e.HTTPStatusCode == http.StatusBadGateway ||
			e.HTTPStatusCode == http.StatusGatewayTimeout || e.HTTPStatusCode == http.StatusTooManyRequests
	}, Err: backends.ErrUnavailable},
}

// mapErr wraps a client error with what was being done and the backend
// error that gives the caller the right gRPC code.
func mapErr(err error, what string) error {
	return restutil.Classify(err, what, errorTable, backends.ErrUnavailable)
}

func isAPI(err error, text string) bool {
	var api *APIError
	return errors.As(err, &api) && strings.Contains(api.Message, text)
}
