package grpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

func TestFrom(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("get v: %w", backends.ErrNotFound), codes.NotFound},
		{fmt.Errorf("attach: %w", backends.ErrConflict), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", backends.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{status.Error(codes.Aborted, "inner"), codes.Aborted},
		{errors.New("disk on fire"), codes.Internal},
	}
	for _, tt := range tests {
		got := From(tt.err, "op")
		if status.Code(got) != tt.code {
			t.Errorf("From(%v) code %v, want %v", tt.err, status.Code(got), tt.code)
		}
	}
	if From(nil, "op") != nil {
		t.Fatal("From(nil) is not nil")
	}
}
