package attribution_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/agent/attribution"
)

func TestMappingDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"0":     "12345\n",
		"1":     "12345\n",
		"3":     "  777 \n778\n\n", // two jobs share GPU 3
		"4":     "",                // an epilog emptied it
		"notes": "ignored",
		"7":     strings.Repeat("9", 500),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := attribution.MappingDir{Dir: dir}.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{0: "12345", 1: "12345", 3: "777,778", 7: strings.Repeat("9", 200)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jobs %v, want %v", got, want)
	}
	if got, err := (attribution.MappingDir{Dir: filepath.Join(dir, "missing")}).Jobs(); err != nil || len(got) != 0 {
		t.Errorf("missing dir: %v %v, want no jobs and no error", got, err)
	}
}
