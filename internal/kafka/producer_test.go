package kafka

import (
	"errors"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	e := func(s string) error { return errors.New(s) }
	long := strings.Repeat("é", 150)
	for _, c := range []struct {
		errs []error
		want string
	}{
		{[]error{nil, e("a"), e("a"), nil}, "2 of 4 messages failed: a"},
		{[]error{e("a"), e("b"), e("c"), e("d"), e("e"), e("a")}, "6 of 6 messages failed: a; b; c; and 2 other errors"},
		{[]error{e(long)}, "1 of 1 messages failed: " + strings.Repeat("é", 100) + "…"},
	} {
		if got := summarize(c.errs); got != c.want {
			t.Errorf("summarize(%v) = %q, want %q", c.errs, got, c.want)
		}
	}
}
