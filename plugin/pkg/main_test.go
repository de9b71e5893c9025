package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query"
)

func goBuild(t *testing.T, dir, pkg, out string) string {
	t.Helper()
	bin := filepath.Join(dir, out)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}

// The built plugin binary, started and spoken to as Grafana does (hashicorp go-plugin handshake,
// the SDK's gRPC services), answers QueryData, CheckHealth and CallResource over a chDB directory
// that the real pipeline (gpufleet demo) filled, with the same numbers `gpufleet query` prints.
func TestPluginBinaryOverGRPC(t *testing.T) {
	lib := testenv.LibCHDB(t)
	dir := t.TempDir()
	gpufleet := goBuild(t, dir, "./cmd/gpufleet", "gpufleet")
	pluginBin := goBuild(t, dir, "./plugin/pkg", "gpx_"+plugin.ID)
	data := filepath.Join(dir, "data")
	env := append(os.Environ(), "GPUFLEET_LIBCHDB="+lib)

	run := func(args ...string) []byte {
		cmd := exec.Command(gpufleet, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("gpufleet %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes()
	}
	run("demo", "--for", "4s", "--gpus", "16", "--interval", "500ms", "--data-dir", data, "--http", "")
	var want []query.Series
	if err := json.Unmarshal(run("query", "--clickhouse", "chdb://"+data, "--metric", "gpu_util", "--agg", "max",
		"--by", "node", "--step", "1m", "--since", "10m", "--format", "json"), &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != 2 {
		t.Fatalf("gpufleet query found %d nodes, want the demo's 2", len(want))
	}

	// Only now, with the CLI done with the directory, may the plugin open it.
	cmd := exec.Command(pluginBin)
	cmd.Env = env
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{ProtocolVersion: grpcplugin.ProtocolVersion,
			MagicCookieKey: grpcplugin.MagicCookieKey, MagicCookieValue: grpcplugin.MagicCookieValue},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"data": &grpcplugin.DataGRPCPlugin{}, "diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"resource": &grpcplugin.ResourceGRPCPlugin{}}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		SyncStdout:       io.Discard,
		SyncStderr:       io.Discard,
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	dispense := func(name string) any {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		return raw
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	settings, _ := json.Marshal(plugin.Settings{CHDBPath: data})
	pctx := backend.PluginContext{PluginID: plugin.ID, OrgID: 1, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
		UID: "gpufleet-test", Name: "gpufleet", JSONData: settings, DecryptedSecureJSONData: map[string]string{}, Updated: time.Now()}}

	health, err := dispense("diagnostics").(pluginv2.DiagnosticsClient).CheckHealth(ctx,
		&pluginv2.CheckHealthRequest{PluginContext: backend.ToProto().PluginContext(pctx)})
	if err != nil || health.Status != pluginv2.CheckHealthResponse_OK {
		t.Fatalf("CheckHealth: %v %v", health, err)
	}

	to := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	q, _ := json.Marshal(map[string]any{"metric": "gpu_util", "agg": "max", "groupBy": []string{"node"}})
	req := &backend.QueryDataRequest{PluginContext: pctx, Queries: []backend.DataQuery{{RefID: "A", JSON: q,
		TimeRange: backend.TimeRange{From: to.Add(-10 * time.Minute), To: to}, Interval: time.Minute, MaxDataPoints: 1000}}}
	protoResp, err := dispense("data").(pluginv2.DataClient).QueryData(ctx, backend.ToProto().QueryDataRequest(req))
	if err != nil {
		t.Fatalf("QueryData: %v", err)
	}
	resp, err := backend.FromProto().QueryDataResponse(protoResp)
	if err != nil {
		t.Fatal(err)
	}
	a := resp.Responses["A"]
	if a.Error != nil || len(a.Frames) != 1 || len(a.Frames[0].Fields) != 3 {
		t.Fatalf("QueryData A: %v %v", a.Error, a.Frames)
	}
	f := a.Frames[0]
	for _, s := range want {
		var field int
		for i := 1; i < len(f.Fields); i++ {
			if f.Fields[i].Labels["node"] == s.Labels["node"] {
				field = i
			}
		}
		if field == 0 {
			t.Fatalf("no field for node %s in %v", s.Labels["node"], f.Fields)
		}
		for _, p := range s.Points {
			found := false
			for r := range f.Rows() {
				if f.Fields[0].At(r).(time.Time).Equal(p.T) {
					got, _ := f.Fields[field].ConcreteAt(r)
					found = got == *p.Value
					if !found {
						t.Errorf("node %s at %s: plugin %v, gpufleet query %v", s.Labels["node"], p.T, got, *p.Value)
					}
				}
			}
			if !found {
				t.Errorf("node %s at %s: missing from the plugin's frame", s.Labels["node"], p.T)
			}
		}
	}

	// The same question as a stat or alert condition asks it: one number per node over the window,
	// the largest of the per-minute maxima gpufleet query printed.
	q, _ = json.Marshal(map[string]any{"queryType": "stat", "metric": "gpu_util", "agg": "max", "groupBy": []string{"node"}})
	req.Queries = []backend.DataQuery{{RefID: "B", JSON: q, TimeRange: req.Queries[0].TimeRange}}
	if protoResp, err = dispense("data").(pluginv2.DataClient).QueryData(ctx, backend.ToProto().QueryDataRequest(req)); err != nil {
		t.Fatalf("QueryData stat: %v", err)
	}
	if resp, err = backend.FromProto().QueryDataResponse(protoResp); err != nil {
		t.Fatal(err)
	}
	b := resp.Responses["B"]
	if b.Error != nil || len(b.Frames) != 1 || len(b.Frames[0].Fields) != len(want) || b.Frames[0].Rows() != 1 {
		t.Fatalf("QueryData stat: %v %v", b.Error, b.Frames)
	}
	for i, s := range want {
		peak := *s.Points[0].Value
		for _, p := range s.Points {
			peak = max(peak, *p.Value)
		}
		field := b.Frames[0].Fields[i]
		if got, _ := field.ConcreteAt(0); field.Labels["node"] != s.Labels["node"] || got != peak {
			t.Errorf("stat: %v = %v, want node %s = %v", field.Labels, got, s.Labels["node"], peak)
		}
	}

	stream, err := dispense("resource").(pluginv2.ResourceClient).CallResource(ctx, &pluginv2.CallResourceRequest{
		PluginContext: backend.ToProto().PluginContext(pctx), Path: "labels", Method: "GET", Url: "/resources/labels?dim=node"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 200 || !strings.Contains(string(res.Body), `"node-00000","node-00001"`) {
		t.Errorf("CallResource labels: %d %s", res.Code, res.Body)
	}
}
