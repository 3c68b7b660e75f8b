package ebs

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// perAPIRetryer gives each EC2 API its own adaptive retryer. EC2 limits the
// request rate of each API on its own (DescribeVolumes has a bucket of its
// own, apart from AttachVolume's), so a throttled API must slow down only
// its own calls: one adaptive rate for the whole client would let a storm of
// throttled describes hold back attaches and detaches too. The wait for a
// send token is bounded by the call's context, so retries never outlast
// the CSI deadline.
type perAPIRetryer struct {
	mk  func() *retry.AdaptiveMode
	def *retry.AdaptiveMode

	mu sync.Mutex
	by map[string]*retry.AdaptiveMode
}

func newPerAPIRetryer(maxBackoff time.Duration) *perAPIRetryer {
	mk := func() *retry.AdaptiveMode {
		return retry.NewAdaptiveMode(func(ao *retry.AdaptiveModeOptions) {
			ao.StandardOptions = append(ao.StandardOptions, func(so *retry.StandardOptions) {
				so.MaxAttempts = 5
				so.MaxBackoff = maxBackoff
				so.Backoff = retry.NewExponentialJitterBackoff(maxBackoff)
			})
		})
	}
	return &perAPIRetryer{mk: mk, def: mk(), by: map[string]*retry.AdaptiveMode{}}
}

func (p *perAPIRetryer) of(ctx context.Context) *retry.AdaptiveMode {
	op := awsmiddleware.GetOperationName(ctx)
	if op == "" {
		return p.def
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.by[op]
	if r == nil {
		r = p.mk()
		p.by[op] = r
	}
	return r
}

func (p *perAPIRetryer) IsErrorRetryable(err error) bool { return p.def.IsErrorRetryable(err) }
func (p *perAPIRetryer) MaxAttempts() int                { return p.def.MaxAttempts() }
func (p *perAPIRetryer) RetryDelay(attempt int, err error) (time.Duration, error) {
	return p.def.RetryDelay(attempt, err)
}
func (p *perAPIRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	return p.of(ctx).GetRetryToken(ctx, opErr)
}

// GetInitialToken is only there for aws.Retryer: the SDK asks a RetryerV2
// for GetAttemptToken instead.
func (p *perAPIRetryer) GetInitialToken() func(error) error { return func(error) error { return nil } }
func (p *perAPIRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	return p.of(ctx).GetAttemptToken(ctx)
}

var _ aws.RetryerV2 = (*perAPIRetryer)(nil)
