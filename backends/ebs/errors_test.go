package ebs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

func TestErrorMapping(t *testing.T) {
	api := func(code string, fault smithy.ErrorFault) error {
		return fmt.Errorf("operation error EC2: %w", &smithy.GenericAPIError{Code: code, Message: "msg " + code, Fault: fault})
	}
	tests := []struct {
		err  error
		want error // nil: no sentinel
	}{
		{api("InvalidVolume.NotFound", smithy.FaultClient), backends.ErrNotFound},
		{api("InvalidVolumeID.Malformed", smithy.FaultClient), backends.ErrNotFound},
		{api("InvalidSnapshot.NotFound", smithy.FaultClient), backends.ErrNotFound},
		{api("InvalidAttachment.NotFound", smithy.FaultClient), backends.ErrNotFound},
		{api("InvalidSomething.NotFound", smithy.FaultClient), backends.ErrNotFound},
		{api("InvalidInstanceID.NotFound", smithy.FaultClient), backends.ErrNodeNotFound},
		{api("IdempotentParameterMismatch", smithy.FaultClient), backends.ErrAlreadyExists},
		{api("VolumeInUse", smithy.FaultClient), backends.ErrInUse},
		{api("InvalidParameterValue", smithy.FaultClient), backends.ErrInvalid},
		{api("InvalidParameterCombination", smithy.FaultClient), backends.ErrInvalid},
		{api("InvalidVolume.ZoneMismatch", smithy.FaultClient), backends.ErrInvalid},
		{api("VolumeLimitExceeded", smithy.FaultClient), backends.ErrLimit},
		{api("AttachmentLimitExceeded", smithy.FaultClient), backends.ErrLimit},
		{api("MaxIOPSLimitExceeded", smithy.FaultClient), backends.ErrLimit},
		{api("InsufficientVolumeCapacity", smithy.FaultServer), backends.ErrCapacity},
		{api("IncorrectState", smithy.FaultClient), backends.ErrUnavailable},
		{api("RequestLimitExceeded", smithy.FaultClient), backends.ErrUnavailable},
		{api("Throttling", smithy.FaultClient), backends.ErrUnavailable},
		{api("InternalError", smithy.FaultServer), backends.ErrUnavailable},
		{api("ServiceUnavailable", smithy.FaultServer), backends.ErrUnavailable},
		{api("SomethingNew", smithy.FaultServer), backends.ErrUnavailable},
		{api("UnauthorizedOperation", smithy.FaultClient), backends.ErrPermission},
		{api("AuthFailure", smithy.FaultClient), backends.ErrPermission},
		{api("VolumeModificationRateExceeded", smithy.FaultClient), backends.ErrLimit},
		{api("InvalidSnapshot.InUse", smithy.FaultClient), backends.ErrInUse},
		{api("OperationNotPermitted", smithy.FaultClient), backends.ErrUnavailable},
		{errors.New("dial tcp: connection refused"), backends.ErrUnavailable},
	}
	sentinels := []error{backends.ErrNotFound, backends.ErrNodeNotFound, backends.ErrAlreadyExists, backends.ErrInUse,
		backends.ErrInvalid, backends.ErrLimit, backends.ErrCapacity, backends.ErrUnavailable, backends.ErrConflict, backends.ErrPermission}
	for _, tc := range tests {
		got := mapErr(tc.err, "op")
		for _, s := range sentinels {
			if errors.Is(got, s) != (s == tc.want) {
				t.Errorf("%v: errors.Is(%v) = %t", tc.err, s, errors.Is(got, s))
			}
		}
	}
	// Where EC2's message does not say what to do, the error does.
	for code, want := range map[string]string{
		"VolumeModificationRateExceeded": "4 modifications of a volume in any rolling 24 hours",
		"InvalidSnapshot.InUse":          "deregister the AMI",
		"OperationNotPermitted":          "retry when it has finished",
	} {
		if got := mapErr(api(code, smithy.FaultClient), "op").Error(); !strings.Contains(got, want) {
			t.Errorf("%s: %q does not say %q", code, got, want)
		}
	}
	if got := mapErr(fmt.Errorf("x: %w", context.DeadlineExceeded), "op"); !errors.Is(got, context.DeadlineExceeded) || errors.Is(got, backends.ErrUnavailable) {
		t.Errorf("deadline: %v", got)
	}
	if got := mapErr(errors.New("Authorization: AWS4-HMAC-SHA256 Credential=AKID/2024"), "op"); got.Error() != "storage unavailable: op: Authorization: AWS4-HMAC-SHA256 Credential=REDACTED" {
		t.Errorf("scrub: %v", got)
	}
	if mapErr(nil, "op") != nil {
		t.Error("nil")
	}
}
