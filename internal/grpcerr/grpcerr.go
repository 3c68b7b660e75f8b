// Package grpcerr turns backend and system errors into the gRPC status a
// CSI caller can act on. Mesos retries only UNAVAILABLE and
// DEADLINE_EXCEEDED, so anything transient must map to one of those.
package grpcerr

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

var table = []struct {
	err  error
	code codes.Code
}{
	{backends.ErrNotFound, codes.NotFound},
	{backends.ErrNodeNotFound, codes.NotFound},
	{backends.ErrAlreadyExists, codes.AlreadyExists},
	{backends.ErrInUse, codes.FailedPrecondition},
	{backends.ErrConflict, codes.FailedPrecondition},
	{backends.ErrInvalid, codes.InvalidArgument},
	{backends.ErrCapacity, codes.ResourceExhausted},
	{backends.ErrLimit, codes.ResourceExhausted},
	{backends.ErrOutOfRange, codes.OutOfRange},
	{backends.ErrUnavailable, codes.Unavailable},
	{backends.ErrUnsupported, codes.InvalidArgument},
	{backends.ErrPermission, codes.PermissionDenied},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// Code returns the gRPC code for err.
func Code(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, t := range table {
		if errors.Is(err, t.err) {
			return t.code
		}
	}
	return codes.Internal
}

// From wraps err in a status whose message starts with what. A nil err
// gives nil; an error that already is a status keeps its code.
func From(err error, what string) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return status.Error(s.Code(), what+": "+s.Message())
	}
	return status.Error(Code(err), what+": "+err.Error())
}
