package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The state directory: --state-dir, else the system one where the agent may write, else XDG's,
// else the home directory's.
func TestStateDirDefault(t *testing.T) {
	tmp := t.TempDir()
	writable := filepath.Join(tmp, "var", "lib", "gpufleet")
	blocker := filepath.Join(tmp, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	unwritable := filepath.Join(blocker, "gpufleet") // under a regular file: refused even to root
	cases := []struct {
		name, dir, system string
		env               map[string]string
		want              string
	}{
		{"flag", "/srv/agent", writable, nil, "/srv/agent"},
		{"system", "", writable, map[string]string{"HOME": "/home/u"}, writable},
		{"XDG", "", unwritable, map[string]string{"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}, "/x/state/gpufleet"},
		{"relative XDG ignored", "", unwritable, map[string]string{"XDG_STATE_HOME": "rel", "HOME": "/home/u"}, "/home/u/.local/state/gpufleet"},
		{"home", "", unwritable, map[string]string{"HOME": "/home/u"}, "/home/u/.local/state/gpufleet"},
		{"none", "", unwritable, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := agentState{dir: c.dir, getenv: func(k string) string { return c.env[k] }}
			got, err := a.resolve(c.system)
			if got != c.want || (c.want == "") != (err != nil) {
				t.Fatalf("resolve: %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
