package ebs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// errorCodes maps EC2 error codes to the backend sentinels the services
// turn into gRPC codes. Codes not listed stay unwrapped and become
// INTERNAL.
var errorCodes = map[string]error{
	"UnauthorizedOperation":               backends.ErrPermission,
	"AuthFailure":                         backends.ErrPermission,
	"Blocked":                             backends.ErrPermission,
	"OptInRequired":                       backends.ErrPermission,
	"InvalidVolume.NotFound":              backends.ErrNotFound,
	"InvalidVolumeID.Malformed":           backends.ErrNotFound,
	"InvalidVolumeID.NotFound":            backends.ErrNotFound,
	"InvalidSnapshot.NotFound":            backends.ErrNotFound,
	"InvalidSnapshotID.Malformed":         backends.ErrNotFound,
	"InvalidAttachment.NotFound":          backends.ErrNotFound,
	"InvalidInstanceID.NotFound":          backends.ErrNodeNotFound,
	"InvalidInstanceID.Malformed":         backends.ErrNodeNotFound,
	"IdempotentParameterMismatch":         backends.ErrAlreadyExists,
	"VolumeInUse":                         backends.ErrInUse,
	"InvalidParameterValue":               backends.ErrInvalid,
	"InvalidParameterCombination":         backends.ErrInvalid,
	"InvalidParameter":                    backends.ErrInvalid,
	"MissingParameter":                    backends.ErrInvalid,
	"UnknownVolumeType":                   backends.ErrInvalid,
	"InvalidVolume.ZoneMismatch":          backends.ErrInvalid,
	"InvalidZone.NotFound":                backends.ErrInvalid,
	"InvalidAvailabilityZone":             backends.ErrInvalid,
	"InvalidKMSKey.NotFound":              backends.ErrInvalid,
	"KMSKeyNotAccessibleFault":            backends.ErrInvalid,
	"VolumeLimitExceeded":                 backends.ErrLimit,
	"AttachmentLimitExceeded":             backends.ErrLimit,
	"MaxIOPSLimitExceeded":                backends.ErrLimit,
	"SnapshotLimitExceeded":               backends.ErrLimit,
	"ResourceLimitExceeded":               backends.ErrLimit,
	"VolumeModificationSizeLimitExceeded": backends.ErrLimit,
	"VolumeModificationRateExceeded":      backends.ErrLimit,
	"InvalidSnapshot.InUse":               backends.ErrInUse,
	"OperationNotPermitted":               backends.ErrUnavailable,
	"InsufficientVolumeCapacity":          backends.ErrCapacity,
	"IncorrectState":                      backends.ErrUnavailable,
	"IncorrectModificationState":          backends.ErrUnavailable,
	"RequestLimitExceeded":                backends.ErrUnavailable,
	"Throttling":                          backends.ErrUnavailable,
	"ThrottlingException":                 backends.ErrUnavailable,
	"RequestThrottled":                    backends.ErrUnavailable,
	"ServiceUnavailable":                  backends.ErrUnavailable,
	"Unavailable":                         backends.ErrUnavailable,
	"InternalError":                       backends.ErrUnavailable,
	"InternalFailure":                     backends.ErrUnavailable,
	"InvalidPaginationToken":              backends.ErrUnavailable,
}

// errorHints complete EC2's message where it does not say what to do.
var errorHints = map[string]string{
	"VolumeModificationRateExceeded": "EC2 allows 4 modifications of a volume in any rolling 24 hours; retry when the oldest of the last 4 is 24 hours old",
	"InvalidSnapshot.InUse":          "the snapshot is in use (by a volume being created from it, or an AMI); delete it when that is done or deregister the AMI",
	"OperationNotPermitted":          "another operation, such as a modification, is in progress on it; retry when it has finished",
}

// apiCode returns the EC2 error code in err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// mapErr wraps an EC2 call's error in the sentinel for its code, keeping
// the code and EC2's message (which never holds credentials). Context
// errors stay context errors; transport errors (no EC2 answer at all) are
// ErrUnavailable, so the caller retries.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &ae):
		msg := fmt.Sprintf("%s: EC2 %s: %s", what, ae.ErrorCode(), ae.ErrorMessage())
		if h := errorHints[ae.ErrorCode()]; h != "" {
			msg += " (" + h + ")"
		}
		if s, ok := errorCodes[ae.ErrorCode()]; ok {
			return fmt.Errorf("%w: %s", s, msg)
		}
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
			return fmt.Errorf("%w: %s", backends.ErrUnavailable, msg)
		}
		if strings.HasSuffix(ae.ErrorCode(), ".NotFound") {
			return fmt.Errorf("%w: %s", backends.ErrNotFound, msg)
		}
		if ae.ErrorFault() == smithy.FaultServer {
			return fmt.Errorf("%w: %s", backends.ErrUnavailable, msg)
		}
		return errors.New(msg)
	}
	return fmt.Errorf("%w: %s: %s", backends.ErrUnavailable, what, scrub(err.Error()))
}

// scrub drops anything after "Credential=" in transport error texts, in
// case a signing header is ever echoed.
func scrub(s string) string {
	if i := strings.Index(s, "Credential="); i >= 0 {
		return s[:i] + "Credential=REDACTED"
	}
	return s
}
