package attribution

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The kubelet's answer is outside input: any bytes decode to an error or a mapping, never a panic,
// and every mapped job is bounded.
func FuzzPodResourcesDecode(f *testing.F) {
	dev := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "nvidia.com/gpu")
	dev = protowire.AppendString(protowire.AppendTag(dev, 2, protowire.BytesType), "GPU-1")
	ctr := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), dev)
	pod := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "p")
	pod = protowire.AppendBytes(protowire.AppendTag(pod, 3, protowire.BytesType), ctr)
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), pod))
	f.Add([]byte{0x0a, 0xff})
	f.Add([]byte{})
	p := &PodResources{Resource: "nvidia.com/gpu"}
	f.Fuzz(func(t *testing.T, b []byte) {
		jobs, err := p.decodeList(b)
		if err != nil {
			return
		}
		for id, job := range jobs {
			if len(job) > maxJobLen || !utf8.ValidString(job) {
				t.Fatalf("job of %q is %d bytes, valid UTF-8 %v", id, len(job), utf8.ValidString(job))
			}
		}
	})
}

func TestBoundJob(t *testing.T) {
	for _, s := range []string{"", "job-1", "\xff\xfe", string(make([]byte, 300)), "é" + string(make([]byte, 199)) + "é"} {
		got := boundJob(s)
		if len(got) > maxJobLen || !utf8.ValidString(got) {
			t.Errorf("boundJob(%q) = %q", s, got)
		}
	}
	if got := boundJob("ml/train-0"); got != "ml/train-0" {
		t.Errorf("a plain name changed: %q", got)
	}
}
