// Package retry runs an operation again after a failure, waiting a jittered, capped, growing delay
// between tries, until it succeeds, fails permanently, runs out of tries, or its context ends.
//
// It is written here rather than on github.com/cenkalti/backoff/v5 (in go.sum through a
// dependency): v5's Retry stops after 15 minutes by default, where every loop here retries until
// its context ends; its ExponentialBackOff jitters by ±50 % around the delay, so a wait falls
// below Initial and above Max; and the agent's spool loop and ingest's partition fetch need the
// delays alone, to wait on channels of their own or reset on progress. What that leaves is a few
// dozen lines.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Jitter is how a delay is drawn.
type Jitter int

const (
	// Decorrelated draws each delay uniformly between Initial and three times the previous one,
	// capped at Max ("decorrelated jitter"): never less than Initial, so a service that is down
	// still sees each client at most once per Initial, and a mean that about doubles per try.
	Decorrelated Jitter = iota
	// Full draws the n-th delay uniformly from [0, min(Max, Initial·2ⁿ)) ("full jitter"): the
	// widest spread, at the price of some retries at once.
	Full
)

// Policy says how long to wait between tries and how many to make.
type Policy struct {
	Initial  time.Duration // the first delay (Decorrelated: the least delay); at least 1 ns is used
	Max      time.Duration // no delay is longer; below Initial, Initial is used
	MaxTries int           // tries in all, the first included; 0 or less: no limit
	Jitter   Jitter

	rand func() float64 // [0, 1); tests replace it
}

// Backoff hands out the delays of one run of retries. It is not safe for concurrent use.
type Backoff struct {
	p    Policy
	n    int           // delays handed out since the last Reset
	prev time.Duration // the last of them (Decorrelated)
}

// Backoff starts a run of delays.
func (p Policy) Backoff() *Backoff {
	p.Initial = max(p.Initial, 1)
	p.Max = max(p.Max, p.Initial)
	if p.rand == nil {
		p.rand = rand.Float64
	}
	return &Backoff{p: p}
}

// Next returns the delay to wait before the next try.
func (b *Backoff) Next() time.Duration {
	p := &b.p
	b.n++
	switch p.Jitter {
	case Full:
		ceil := p.Initial
		for i := 1; i < b.n && ceil < p.Max; i++ {
			// At most log2(Max/Initial) doublings, and none past Max: no overflow for any n.
			ceil = min(2*min(ceil, p.Max/2), p.Max)
		}
		return time.Duration(p.rand() * float64(ceil))
	default:
		hi := p.Max
		if prev := max(b.prev, p.Initial); prev < p.Max/3 {
			hi = 3 * prev
		}
		d := p.Initial + time.Duration(p.rand()*float64(hi-p.Initial))
		b.prev = d
		return d
	}
}

// Reset starts the delays again from Initial, after progress.
func (b *Backoff) Reset() { b.n, b.prev = 0, 0 }

// Sleep waits d, or until ctx ends, and then returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Permanent marks err as one that retrying cannot cure: Do returns it (unmarked) at once. A nil
// err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err}
}

type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Option adjusts one Do.
type Option func(*options)

type options struct {
	onRetry func(try int, err error, wait time.Duration)
	sleep   func(context.Context, time.Duration) error
}

// OnRetry has f called after each failed try that will be retried, before the wait: try counts
// from 1, err is what the try returned, wait is how long Do now waits. It is where a caller logs
// "retrying after err, waiting wait" and counts retries.
func OnRetry(f func(try int, err error, wait time.Duration)) Option {
	return func(o *options) { o.onRetry = f }
}

// Do calls op until it returns nil, and returns:
//   - nil once op succeeds;
//   - the error op marked with Permanent, unmarked, at once;
//   - op's last error, wrapped, once p.MaxTries tries failed;
//   - once ctx ends (during a wait, or a try failed after it ended), an error that wraps both
//     ctx.Err() and op's last error.
//
// op is tried once even when ctx has already ended: it may hold a context of its own for that.
func Do(ctx context.Context, p Policy, op func(context.Context) error, opts ...Option) error {
	_, err := DoValue(ctx, p, func(ctx context.Context) (struct{}, error) { return struct{}{}, op(ctx) }, opts...)
	return err
}

// DoValue is Do for an op that returns a value: the value of the successful try, or the zero
// value with the error.
func DoValue[T any](ctx context.Context, p Policy, op func(context.Context) (T, error), opts ...Option) (T, error) {
	o := options{sleep: Sleep}
	for _, f := range opts {
		f(&o)
	}
	b := p.Backoff()
	var zero T
	for try := 1; ; try++ {
		v, err := op(ctx)
		if err == nil {
			return v, nil
		}
		if perm, ok := err.(*permanent); ok {
			return zero, perm.err
		}
		if errors.As(err, new(*permanent)) {
			return zero, err // marked further down: the marker is transparent
		}
		if ctx.Err() != nil {
			return zero, stopped(ctx, err)
		}
		if p.MaxTries > 0 && try >= p.MaxTries {
			return zero, fmt.Errorf("gave up after %d tries: %w", try, err)
		}
		wait := b.Next()
		if o.onRetry != nil {
			o.onRetry(try, err, wait)
		}
		if o.sleep(ctx, wait) != nil {
			return zero, stopped(ctx, err)
		}
	}
}

func stopped(ctx context.Context, last error) error {
	return fmt.Errorf("stopped retrying: %w (last error: %w)", ctx.Err(), last)
}
