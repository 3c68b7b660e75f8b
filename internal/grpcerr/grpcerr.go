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

// Resolve finds the backend and native id of a volume (or snapshot) id a
// caller sent: INVALID_ARGUMENT for an empty or malformed id, NOT_FOUND for
// one that is not this plugin's.
func Resolve(set *backends.Set, id string) (backends.Backend, string, error) {
	if id == "" {
		return nil, "", status.Error(codes.InvalidArgument, "volume_id is required")
	}
	b, native, err := set.Resolve(id)
	if err != nil {
		if Code(err) == codes.Internal { // malformed
			return nil, "", status.Errorf(codes.InvalidArgument, "volume_id: %v", err)
		}
		return nil, "", From(err, "volume_id")
	}
	return b, native, nil
}
