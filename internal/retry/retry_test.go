package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// fixed returns a rand that yields vs in turn, then the last of them.
func fixed(vs ...float64) func() float64 {
	return func() float64 {
		v := vs[0]
		if len(vs) > 1 {
			vs = vs[1:]
		}
		return v
	}
}

func TestNextExact(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		// Full: the n-th ceiling is min(Max, Initial·2ⁿ⁻¹); rand scales it.
		{"full top", Policy{Initial: 100 * ms, Max: time.Second, Jitter: Full, rand: fixed(0.5)},
			[]time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms}},
		{"full zero", Policy{Initial: 100 * ms, Max: time.Second, Jitter: Full, rand: fixed(0)},
			[]time.Duration{0, 0, 0}},
		// Decorrelated: uniform in [Initial, 3·previous), capped.
		{"decorrelated least", Policy{Initial: 100 * ms, Max: time.Second, rand: fixed(0)},
			[]time.Duration{100 * ms, 100 * ms, 100 * ms}},
		{"decorrelated half", Policy{Initial: 100 * ms, Max: time.Second, rand: fixed(0.5)},
			[]time.Duration{200 * ms, 350 * ms, 550 * ms, 550 * ms}},
		// 1 is past rand's range ([0, 1)): the bound itself, to pin it.
		{"decorrelated cap", Policy{Initial: 100 * ms, Max: time.Second, rand: fixed(1, 1, 1, 1, 0)},
			[]time.Duration{300 * ms, 900 * ms, time.Second, time.Second, 100 * ms}},
		{"full cap", Policy{Initial: 100 * ms, Max: 300 * ms, Jitter: Full, rand: fixed(1)},
			[]time.Duration{100 * ms, 200 * ms, 300 * ms, 300 * ms}},
		{"max below initial", Policy{Initial: time.Second, Max: ms, rand: fixed(0.9)},
			[]time.Duration{time.Second, time.Second}},
		{"zero initial", Policy{rand: fixed(0)}, []time.Duration{1, 1}},
	} {
		b := c.p.Backoff()
		for i, want := range c.want {
			if got := b.Next(); got != want {
				t.Errorf("%s: delay %d = %s, want %s", c.name, i+1, got, want)
			}
		}
	}
}

// TestNextBounds draws from the real source: every delay lies within its jitter's bounds and
// never past Max, also after a thousand tries and with a Max near the largest duration.
func TestNextBounds(t *testing.T) {
	for _, c := range []struct {
		name         string
		initial, max time.Duration
		jitter       Jitter
	}{
		{"full", 10 * time.Millisecond, 5 * time.Second, Full},
		{"decorrelated", 10 * time.Millisecond, 5 * time.Second, Decorrelated},
		{"full huge cap", time.Second, math.MaxInt64, Full},
		{"decorrelated huge cap", time.Second, math.MaxInt64, Decorrelated},
	} {
		b := Policy{Initial: c.initial, Max: c.max, Jitter: c.jitter}.Backoff()
		var prev time.Duration
		for n := 1; n <= 1000; n++ {
			d := b.Next()
			lo, hi := c.initial, c.max
			switch c.jitter {
			case Full:
				lo = 0
				if n < 63 && c.initial <= c.max>>(n-1) {
					hi = min(c.max, c.initial<<(n-1))
				}
			case Decorrelated:
				if p := max(prev, c.initial); p < c.max/3 {
					hi = 3 * p
				}
			}
			if d < lo || d > hi || d < 0 {
				t.Fatalf("%s: delay %d = %s, want within [%s, %s]", c.name, n, d, lo, hi)
			}
			prev = d
		}
	}
}

func TestReset(t *testing.T) {
	b := Policy{Initial: time.Millisecond, Max: time.Second, Jitter: Full, rand: fixed(0.5)}.Backoff()
	for range 5 {
		b.Next()
	}
	b.Reset()
	if d := b.Next(); d != 500*time.Microsecond {
		t.Errorf("first delay after Reset = %s, want 500µs (half of Initial)", d)
	}
}

func TestDo(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	fatal := errors.New("fatal")
	for _, c := range []struct {
		name      string
		results   []error // what each try returns; past the end, errA
		maxTries  int
		wantTries int
		wantIs    []error // the returned error wraps each
		wantExact error   // the returned error is exactly this
	}{
		{"first try", []error{nil}, 0, 1, nil, nil},
		{"after failures", []error{errA, errB, nil}, 0, 3, nil, nil},
		{"permanent unmarked", []error{errA, Permanent(fatal)}, 0, 2, nil, fatal},
		{"permanent wrapped", []error{fmt.Errorf("op: %w", Permanent(fatal))}, 0, 1, []error{fatal}, nil},
		{"max tries", []error{errB, errB, errA}, 3, 3, []error{errA}, nil},
		{"one try", nil, 1, 1, []error{errA}, nil},
		{"success on last try", []error{errA, errA, nil}, 3, 3, nil, nil},
	} {
		tries := 0
		var waits []time.Duration
		var hooked []int
		err := Do(context.Background(), Policy{Initial: time.Millisecond, Max: time.Second, MaxTries: c.maxTries, rand: fixed(0)},
			func(context.Context) error {
				tries++
				if tries <= len(c.results) {
					return c.results[tries-1]
				}
				return errA
			},
			OnRetry(func(try int, err error, wait time.Duration) { hooked = append(hooked, try) }),
			func(o *options) {
				o.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			})
		if tries != c.wantTries {
			t.Errorf("%s: %d tries, want %d", c.name, tries, c.wantTries)
		}
		if len(waits) != tries-1 || len(hooked) != tries-1 {
			t.Errorf("%s: %d waits and %d OnRetry calls for %d tries, want %d", c.name, len(waits), len(hooked), tries, tries-1)
		}
		for i, try := range hooked {
			if try != i+1 {
				t.Errorf("%s: OnRetry call %d for try %d", c.name, i+1, try)
			}
		}
		switch {
		case c.wantExact != nil:
			if err != c.wantExact {
				t.Errorf("%s: err %#v, want exactly %#v", c.name, err, c.wantExact)
			}
		case c.wantIs != nil:
			for _, w := range c.wantIs {
				if !errors.Is(err, w) {
					t.Errorf("%s: err %v does not wrap %v", c.name, err, w)
				}
			}
		case err != nil:
			t.Errorf("%s: err %v, want nil", c.name, err)
		}
	}
}

// TestDoContext ends ctx in the middle of a wait long enough that only the context can end it.
func TestDoContext(t *testing.T) {
	errA := errors.New("a")
	for _, c := range []struct {
		name  string
		cause func(ctx context.Context, cancel context.CancelFunc) // called from OnRetry, before the wait
		want  error
	}{
		{"canceled mid-wait", func(_ context.Context, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"deadline mid-wait", nil, context.DeadlineExceeded},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		if c.cause == nil {
			ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
		}
		tries := 0
		err := Do(ctx, Policy{Initial: time.Hour, Max: time.Hour},
			func(context.Context) error { tries++; return errA },
			OnRetry(func(int, error, time.Duration) {
				if c.cause != nil {
					go c.cause(ctx, cancel)
				}
			}))
		cancel()
		if tries != 1 || !errors.Is(err, c.want) || !errors.Is(err, errA) {
			t.Errorf("%s: %d tries, err %v; want 1 try and an error wrapping %v and %v", c.name, tries, err, c.want, errA)
		}
	}
	// A try that fails once ctx has ended is not followed by a wait or a retry.
	ctx, cancel := context.WithCancel(context.Background())
	tries, hooked := 0, 0
	err := Do(ctx, Policy{Initial: time.Hour},
		func(context.Context) error { tries++; cancel(); return errA },
		OnRetry(func(int, error, time.Duration) { hooked++ }))
	if tries != 1 || hooked != 0 || !errors.Is(err, context.Canceled) || !errors.Is(err, errA) {
		t.Errorf("ended during the try: %d tries, %d OnRetry calls, err %v", tries, hooked, err)
	}
	// Tried once even when ctx has ended already.
	tries = 0
	if err := Do(ctx, Policy{}, func(context.Context) error { tries++; return nil }); err != nil || tries != 1 {
		t.Errorf("ended before: %d tries, err %v; want 1 and nil", tries, err)
	}
}

func TestDoValue(t *testing.T) {
	tries := 0
	v, err := DoValue(context.Background(), Policy{Initial: 1, Max: 1}, func(context.Context) (int, error) {
		tries++
		if tries < 3 {
			return -1, errors.New("not yet")
		}
		return 42, nil
	})
	if v != 42 || err != nil {
		t.Errorf("DoValue = %d, %v; want 42, nil", v, err)
	}
	v, err = DoValue(context.Background(), Policy{}, func(context.Context) (int, error) { return 7, Permanent(errors.New("no")) })
	if v != 0 || err == nil {
		t.Errorf("DoValue after a permanent error = %d, %v; want 0 and the error", v, err)
	}
}

func TestPermanentNil(t *testing.T) {
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}
