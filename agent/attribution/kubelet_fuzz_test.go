package attribution

import (
	"encoding/binary"
	"maps"
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
	p := &PodResources{Resources: DefaultGPUResources}
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

// The response body around that message is outside input too: decodeResponse takes exactly one
// uncompressed gRPC frame whose length is the rest of the body, and then answers what decodeList
// answers for the message; any other body is an error.
func FuzzPodResourcesResponse(f *testing.F) {
	dev := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "nvidia.com/gpu")
	dev = protowire.AppendString(protowire.AppendTag(dev, 2, protowire.BytesType), "GPU-1")
	ctr := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), dev)
	pod := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "p")
	pod = protowire.AppendBytes(protowire.AppendTag(pod, 3, protowire.BytesType), ctr)
	list := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), pod)
	f.Add(grpcFrame(0, list))
	f.Add(grpcFrame(1, list))                        // compressed
	f.Add(grpcFrame(0, list)[:len(list)+4])          // cut short
	f.Add(append(grpcFrame(0, list), 0, 0, 0, 0, 0)) // a second message
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0})
	p := &PodResources{Resources: DefaultGPUResources}
	f.Fuzz(func(t *testing.T, body []byte) {
		jobs, err := p.decodeResponse(body)
		if err == nil {
			if len(body) < 5 || body[0] != 0 || int(binary.BigEndian.Uint32(body[1:5])) != len(body)-5 {
				t.Fatalf("accepted %x, which is not one uncompressed frame", body)
			}
			want, lerr := p.decodeList(body[5:])
			if lerr != nil || !maps.Equal(jobs, want) {
				t.Fatalf("framed answer %v differs from the message's %v (%v)", jobs, want, lerr)
			}
		}
		// Framed, any message is read as the message itself.
		if len(body) > 1<<20 {
			return
		}
		framed, ferr := p.decodeResponse(grpcFrame(0, body))
		want, lerr := p.decodeList(body)
		if (ferr == nil) != (lerr == nil) || !maps.Equal(framed, want) {
			t.Fatalf("framed: %v, %v; message: %v, %v", framed, ferr, want, lerr)
		}
		if _, err := p.decodeResponse(grpcFrame(1, body)); err == nil {
			t.Fatal("accepted a compressed frame")
		}
	})
}

// grpcFrame is msg as one gRPC length-prefixed message with the given compressed flag.
func grpcFrame(flag byte, msg []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{flag}, uint32(len(msg))), msg...)
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
