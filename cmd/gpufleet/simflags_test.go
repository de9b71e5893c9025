package main_test

import (
	"strings"
	"testing"
)

// The failure model's flags: a bad --inject, --failure-scale or --repair-time stops the command
// with one line naming the flag and the field, before any broker is tried; the demo's default
// scale is the one that makes its fleet fail every half minute or so.
func TestSimFailureFlags(t *testing.T) {
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"inject bad gpu", nil, []string{"simulate", "--inject", "node=3,gpu=x,fault=dbe"}, 2, `--inject: field gpu: "x" is not a GPU index 0..63`},
		{"inject unknown fault", nil, []string{"simulate", "--inject", "node=0,gpu=1,fault=ecc"}, 2, `--inject: field fault: "ecc" is not a fault`},
		{"inject missing field", nil, []string{"demo", "--inject", "node=0,fault=xid79"}, 2, "--inject: field gpu missing"},
		{"inject no such node", nil, []string{"simulate", "--gpus", "16", "--inject", "node=node-00099,gpu=1,fault=xid79"}, 2,
			"field node: no simulated node node-00099 (this fleet is node-00000 … node-00001)"},
		{"inject gpu past the node", []string{"GPUFLEET_INJECT=node=1,gpu=1,fault=dbe;node=0,gpu=9,fault=dbe"}, []string{"simulate"}, 2,
			"field gpu: node-00000 has GPUs 0..7 [--inject from env GPUFLEET_INJECT]"},
		{"inject short last node", nil, []string{"agent", "--source", "sim", "--gpus", "4", "--inject", "node=0,gpu=5,fault=thermal", "--state-dir", t.TempDir()}, 2,
			"field gpu: node-00000 has GPUs 0..3"},
		{"negative scale", nil, []string{"simulate", "--failure-scale", "-1"}, 2, "--failure-scale -1: must be 0..1e+07"},
		{"huge scale", []string{"GPUFLEET_FAILURE_SCALE=1e9"}, []string{"simulate"}, 2, "--failure-scale 1e+09: must be 0..1e+07"},
		{"zero repair", nil, []string{"simulate", "--repair-time", "0s"}, 2, "--repair-time 0s: must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, want %d; stderr %q lacks %q", r.code, c.code, r.stderr, c.want)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n") + 1; lines > 1 {
				t.Errorf("error takes %d lines, want one:\n%s", lines, r.stderr)
			}
		})
	}
	for cmd, want := range map[string]string{"demo": `failure-scale: "100000"`, "simulate": `failure-scale: "1"`} {
		r := run(t, nil, cmd, "--print-config")
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("%s --print-config (exit %d) lacks %s:\n%s", cmd, r.code, want, r.stdout)
		}
	}
	r := run(t, nil, "simulate", "--print-config", "--inject", "node=2,gpu=1,fault=dbe", "--inject", "node=0,gpu=0,fault=xid79,after=5s;node=1,gpu=3,fault=thermal,repair=1m")
	if want := `inject: "node=node-00002,gpu=1,fault=dbe,after=0s;node=node-00000,gpu=0,fault=xid79,after=5s;node=node-00001,gpu=3,fault=thermal,after=0s,repair=1m0s"`; !strings.Contains(r.stdout, want) {
		t.Errorf("three injections, print-config shows:\n%s\nwant %s", r.stdout, want)
	}
}
