package attribution_test

import (
	"context"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gpufleet/gpufleet/agent/attribution"
)

// rawCodec passes messages through as bytes: the test server answers with a response encoded here
// field by field from the kubelet's published api.proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func msg(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, f...)
	}
	return out
}

func str(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func sub(num protowire.Number, m []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), m)
}

// kubelet serves v1.PodResourcesLister/List with grpc-go on a unix socket, as the kubelet does,
// answering resp (or failing with code when it is not OK).
func kubelet(t *testing.T, resp []byte, code codes.Code) string {
	sock, _ := countingKubelet(t, resp, code)
	return sock
}

// countingKubelet is kubelet that also counts the List calls it answered.
func countingKubelet(t *testing.T, resp []byte, code codes.Code) (string, *atomic.Int64) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "kubelet.sock")
	calls := new(atomic.Int64)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		if method != "/v1.PodResourcesLister/List" {
			return status.Errorf(codes.Unimplemented, "method %s", method)
		}
		var req []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		calls.Add(1)
		if code != codes.OK {
			return status.Error(code, "kubelet says no")
		}
		return stream.SendMsg(&resp)
	}))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return sock, calls
}

func TestPodResources(t *testing.T) {
	device := func(resource string, ids ...string) []byte {
		f := []byte(str(1, resource))
		for _, id := range ids {
			f = append(f, str(2, id)...)
		}
		return sub(2, f)
	}
	resp := msg(
		sub(1, msg(str(1, "train-0"), str(2, "ml"),
			sub(3, msg(str(1, "trainer"), device("nvidia.com/gpu", "GPU-aaa", "GPU-bbb"),
				protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7))), // cpu_ids: skipped
			sub(3, msg(str(1, "sidecar"), device("example.com/nic", "eth1"))))),
		sub(1, msg(str(1, "infer-7"), str(2, "serving"),
			sub(3, msg(str(1, "server"), device("nvidia.com/gpu", "GPU-ccc"))))),
		sub(1, msg(str(1, "idle"), str(2, "ml"))),
	)
	p := attribution.NewPodResources(kubelet(t, resp, codes.OK))
	got, err := p.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"GPU-aaa": "ml/train-0", "GPU-bbb": "ml/train-0", "GPU-ccc": "serving/infer-7"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jobs %v, want %v", got, want)
	}

	// An empty node: no pods, no jobs.
	if got, err := attribution.NewPodResources(kubelet(t, nil, codes.OK)).Jobs(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("empty node: %v %v", got, err)
	}
	// A kubelet error and a missing socket are errors that say where.
	if _, err := attribution.NewPodResources(kubelet(t, nil, codes.PermissionDenied)).Jobs(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "kubelet says no") {
		t.Errorf("kubelet error: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "none.sock")
	if _, err := attribution.NewPodResources(missing).Jobs(context.Background()); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
}

// Under the device plugin's mixed MIG strategy a pod holds nvidia.com/mig-<profile> devices, named
// by the MIG instances' UUIDs (the uuid of their rows); time-sliced replicas are "<uuid>::<n>" of
// nvidia.com/gpu.shared; DEVICE_ID_STRATEGY=index names GPUs by NVML index. Each reaches its row,
// a GPU shared by pods goes to the first of them whatever the kubelet's order, and resources
// outside the patterns are not GPUs.
func TestPodResourcesMIGAndSharing(t *testing.T) {
	device := func(resource string, ids ...string) []byte {
		f := []byte(str(1, resource))
		for _, id := range ids {
			f = append(f, str(2, id)...)
		}
		return sub(2, f)
	}
	pod := func(ns, name string, devs ...[]byte) []byte {
		return sub(1, msg(str(1, name), str(2, ns), sub(3, msg(append([][]byte{str(1, "c")}, devs...)...))))
	}
	resp := msg(
		pod("ml", "small-a", device("nvidia.com/mig-1g.10gb", "MIG-11111111-aaaa")),
		pod("ml", "small-b", device("nvidia.com/mig-1g.10gb", "MIG-22222222-bbbb"), device("nvidia.com/mig-3g.40gb", "MIG-33333333-cccc")),
		pod("web", "z-shared", device("nvidia.com/gpu.shared", "GPU-ddd::1")),
		pod("web", "a-shared", device("nvidia.com/gpu.shared", "GPU-ddd::0")),
		pod("hpc", "by-index", device("nvidia.com/gpu", "3")),
		pod("ml", "nic", device("example.com/nic", "GPU-eee")),
	)
	p := attribution.NewPodResources(kubelet(t, resp, codes.OK))
	a, err := p.Assign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		index uint32
		uuid  string
		want  string
	}{
		{129, "MIG-11111111-aaaa", "ml/small-a"},
		{130, "MIG-22222222-bbbb", "ml/small-b"},
		{131, "MIG-33333333-cccc", "ml/small-b"},
		{0, "GPU-parent-of-migs", ""}, // the parent of MIG instances runs no job of its own
		{1, "GPU-ddd", "web/a-shared"},
		{3, "GPU-fff", "hpc/by-index"},
		{4, "GPU-eee", ""},
	} {
		if got := a.Job(tc.index, tc.uuid); got != tc.want {
			t.Errorf("row %d %s: job %q, want %q", tc.index, tc.uuid, got, tc.want)
		}
	}
	// Only whole GPUs when told so.
	p = attribution.NewPodResources(kubelet(t, resp, codes.OK))
	p.Resources = []string{"nvidia.com/gpu"}
	a, err = p.Assign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Job(129, "MIG-11111111-aaaa"); got != "" {
		t.Errorf("with Resources nvidia.com/gpu, a MIG pod attributed: %q", got)
	}
	if got := a.Job(3, "GPU-fff"); got != "hpc/by-index" {
		t.Errorf("with Resources nvidia.com/gpu, GPU 3: %q", got)
	}
}

func TestCheckResources(t *testing.T) {
	for _, tc := range []struct {
		in []string
		ok bool
	}{
		{attribution.DefaultGPUResources, true},
		{[]string{"nvidia.com/gpu"}, true},
		{[]string{"amd.com/gpu", "nvidia.com/mig-*"}, true},
		{[]string{""}, false},
		{[]string{"*"}, false},
		{[]string{"nvidia.com/*gpu"}, false},
		{[]string{"nvidia.com/gpu**"}, false},
		{[]string{"nvidia.com/gpu x"}, false},
		{[]string{strings.Repeat("a", 300)}, false},
	} {
		if err := attribution.CheckResources(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckResources(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

// An answer is reused for MaxAge, then asked again: one kubelet call per 10 s, not per sample.
func TestPodResourcesReusesAnAnswer(t *testing.T) {
	device := sub(2, msg(str(1, "nvidia.com/gpu"), str(2, "GPU-1")))
	pod := sub(1, msg(str(1, "p"), str(2, "ns"), sub(3, msg(str(1, "c"), device))))
	sock, calls := countingKubelet(t, pod, codes.OK)
	p := attribution.NewPodResources(sock)
	now := time.Unix(1000, 0)
	p.Now = func() time.Time { return now }
	for range 3 {
		if got, err := p.Jobs(context.Background()); err != nil || got["GPU-1"] != "ns/p" {
			t.Fatalf("%v %v", got, err)
		}
		now = now.Add(time.Second)
	}
	if calls.Load() != 1 {
		t.Errorf("%d kubelet calls within MaxAge, want 1", calls.Load())
	}
	now = now.Add(p.MaxAge)
	if _, err := p.Jobs(context.Background()); err != nil || calls.Load() != 2 {
		t.Errorf("after MaxAge: %v, %d calls, want a second call", err, calls.Load())
	}
}
