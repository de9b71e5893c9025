package deploy_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/ from a fresh render of the chart's default values")

const (
	helmChartDir = "helm/gpufleet"
	// kubernetesDir holds the chart rendered with its default values, for kubectl apply.
	kubernetesDir = "kubernetes"
	helmRelease   = "gpufleet"
	helmNamespace = "gpufleet"
)

// renderChart renders the chart with Helm's own loader and engine, as `helm template` does,
// with vals (YAML) over the chart's values.yaml. It returns each template's output by file name.
func renderChart(t *testing.T, vals string) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(helmChartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	user, err := chartutil.ReadValues([]byte(vals))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	top, err := chartutil.ToRenderValues(chrt, user, chartutil.ReleaseOptions{
		Name: helmRelease, Namespace: helmNamespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(chrt, top)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, text := range out {
		if strings.HasPrefix(path.Base(name), "_") || strings.TrimSpace(text) == "" {
			continue
		}
		files[path.Base(name)] = text
	}
	return files, nil
}

// object is one rendered manifest, strictly decoded into its k8s.io/api type (or, for the CRDs,
// into the local types below).
type object struct {
	file       string
	apiVersion string
	kind       string
	name       string
	namespace  string
	annots     map[string]string
	obj        any
}

// typed gives each apiVersion/kind the chart may render the type it must decode into.
var typed = map[string]func() any{
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"apps/v1/DaemonSet":                       func() any { return new(appsv1.DaemonSet) },
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"batch/v1/Job":                            func() any { return new(batchv1.Job) },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return new(networkingv1.NetworkPolicy) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return new(kedaScaledObject) },
	"keda.sh/v1alpha1/TriggerAuthentication":  func() any { return new(kedaTriggerAuthentication) },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return new(podMonitor) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(serviceMonitor) },
}

// The CRDs' types are not in k8s.io/api: these hold the fields the chart sets, from KEDA's
// v1alpha1 and the Prometheus Operator's v1 API, so that a misspelt or misplaced field fails
// the strict decoding as it would fail the API server's schema.
type (
	kedaScaledObject struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			ScaleTargetRef struct {
				APIVersion string `json:"apiVersion,omitempty"`
				Kind       string `json:"kind,omitempty"`
				Name       string `json:"name"`
			} `json:"scaleTargetRef"`
			PollingInterval *int32 `json:"pollingInterval,omitempty"`
			CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
			MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
			MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
			Triggers        []struct {
				Type              string            `json:"type"`
				Metadata          map[string]string `json:"metadata"`
				AuthenticationRef *struct {
					Name string `json:"name"`
					Kind string `json:"kind,omitempty"`
				} `json:"authenticationRef,omitempty"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	kedaTriggerAuthentication struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			SecretTargetRef []struct {
				Parameter string `json:"parameter"`
				Name      string `json:"name"`
				Key       string `json:"key"`
			} `json:"secretTargetRef,omitempty"`
			Env []struct {
				Parameter     string `json:"parameter"`
				Name          string `json:"name"`
				ContainerName string `json:"containerName,omitempty"`
			} `json:"env,omitempty"`
		} `json:"spec"`
	}
	monitorEndpoint struct {
		Port          string `json:"port"`
		Path          string `json:"path,omitempty"`
		Interval      string `json:"interval,omitempty"`
		Authorization *struct {
			Type        string                   `json:"type,omitempty"`
			Credentials corev1.SecretKeySelector `json:"credentials"`
		} `json:"authorization,omitempty"`
	}
	podMonitor struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Selector            metav1.LabelSelector `json:"selector"`
			PodMetricsEndpoints []monitorEndpoint    `json:"podMetricsEndpoints"`
		} `json:"spec"`
	}
	serviceMonitor struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Selector  metav1.LabelSelector `json:"selector"`
			Endpoints []monitorEndpoint    `json:"endpoints"`
		} `json:"spec"`
	}
)

// decodeObjects splits every rendered file into its documents and decodes each strictly: YAML to
// JSON (sigs.k8s.io/yaml, as kubectl does), then encoding/json refusing unknown fields.
func decodeObjects(t *testing.T, files map[string]string) []object {
	t.Helper()
	var objs []object
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	for _, file := range names {
		for i, doc := range strings.Split(files[file], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: not YAML: %v\n%s", file, i, err, doc)
			}
			var meta struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			mk, ok := typed[meta.APIVersion+"/"+meta.Kind]
			if !ok {
				t.Fatalf("%s document %d: %s %s is not a kind the chart may render", file, i, meta.APIVersion, meta.Kind)
			}
			v := mk()
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("%s: %s %q does not decode strictly into %T: %v", file, meta.Kind, meta.Metadata.Name, v, err)
			}
			objs = append(objs, object{file: file, apiVersion: meta.APIVersion, kind: meta.Kind,
				name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, annots: meta.Metadata.Annotations, obj: v})
		}
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func find[T any](t *testing.T, objs []object, name string) *T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok && o.name == name {
			return v
		}
	}
	return nil
}

// commandFlags builds cmd/gpufleet and reads each subcommand's flags from its --help, so that the
// chart sets no variable or argument the binary does not read.
func commandFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	bin := buildGpufleet(t, t.TempDir(), "gpufleet", "")
	re := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)  \[GPUFLEET_[A-Z0-9_]+\]`)
	flags := map[string]map[string]bool{}
	for _, cmd := range []string{"agent", "ingest", "api", "migrate", "topics"} {
		help := helpOf(t, bin, cmd)
		flags[cmd] = map[string]bool{}
		for _, m := range re.FindAllStringSubmatch(help, -1) {
			flags[cmd][m[1]] = true
		}
		if len(flags[cmd]) == 0 {
			t.Fatalf("gpufleet %s --help lists no flags:\n%s", cmd, help)
		}
	}
	return flags
}

// podOf returns the pod template of a workload.
func podOf(o object) (*corev1.PodSpec, bool) {
	switch v := o.obj.(type) {
	case *appsv1.DaemonSet:
		return &v.Spec.Template.Spec, true
	case *appsv1.Deployment:
		return &v.Spec.Template.Spec, true
	case *batchv1.Job:
		return &v.Spec.Template.Spec, true
	}
	return nil, false
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func mountOf(c corev1.Container, volume string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volumeOf(p *corev1.PodSpec, name string) (corev1.Volume, bool) {
	for _, v := range p.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// helmCase is one set of values and what the rendered chart must then hold.
type helmCase struct {
	name   string
	values string
	// attribution is agent.attribution; agentUID the agent's user.
	attribution  string
	agentUID     int64
	nodeSelector map[string]string
	hostPathPool bool
	// autoscaler is the kind that scales ingest: HorizontalPodAutoscaler or ScaledObject.
	autoscaler string
	monitoring bool
	// secrets are the names of the Secrets the chart renders.
	secrets []string
	// kafkaFiles are the files the Kafka clients read their credentials from.
	kafkaFiles []string
	// shards are clickhouse.shardURLs on a sharded cluster (migrate.shardDatabase set).
	shards []string
}

var helmCases = []helmCase{
	{
		name:         "defaults",
		attribution:  "kubelet",
		agentUID:     0,
		nodeSelector: map[string]string{"nvidia.com/gpu.present": "true"},
		autoscaler:   "HorizontalPodAutoscaler",
		secrets:      []string{"gpufleet-clickhouse"},
	},
	{
		name: "mig-cgroups-hostpath-sasl-tls",
		values: `
agent:
  nodeSelector: {nvidia.com/mig.capable: "true"}
  attribution: slurmCgroups
  runAsUser: 65532
  spool: {type: hostPath, hostPath: /var/lib/gpufleet}
kafka:
  brokers: kafka-0.kafka:9093,kafka-1.kafka:9093
  sasl:
    mechanism: scram-sha-512
    agent: {user: agent, password: a}
    ingest: {user: ingest, password: i}
    topics: {user: admin, password: t}
  tls: {enabled: true, ca: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}
clickhouse:
  url: clickhouse://ingest:secret@clickhouse:9000/gpufleet
  readerURL: clickhouse://reader:secret@clickhouse:9000/gpufleet
api: {token: s3cret}
`,
		attribution: "slurmCgroups",
		agentUID:    65532,
		// Helm merges maps: the default label stays (set it to null to drop it).
		nodeSelector: map[string]string{"nvidia.com/gpu.present": "true", "nvidia.com/mig.capable": "true"},
		hostPathPool: true,
		autoscaler:   "HorizontalPodAutoscaler",
		secrets:      []string{"gpufleet-kafka", "gpufleet-clickhouse", "gpufleet-api-token"},
		kafkaFiles:   []string{"sasl-password", "ca.crt"},
	},
	{
		name: "keda-monitoring-existing-secrets",
		values: `
agent: {attribution: none, runAsUser: 65532}
ingest:
  autoscaling: {type: keda, keda: {topic: gpu.samples}}
monitoring: {enabled: true, labels: {release: kube-prometheus-stack}}
kafka:
  sasl: {mechanism: scram-sha-256, existingSecret: gpufleet-kafka-users}
  tls: {enabled: true, existingSecret: gpufleet-kafka-tls, clientCert: true}
clickhouse: {existingSecret: gpufleet-clickhouse-dsn}
api: {existingSecret: gpufleet-api}
networkPolicy:
  metricsFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
`,
		attribution:  "none",
		agentUID:     65532,
		nodeSelector: map[string]string{"nvidia.com/gpu.present": "true"},
		autoscaler:   "ScaledObject",
		monitoring:   true,
		kafkaFiles:   []string{"sasl-password", "ca.crt", "tls.crt", "tls.key"},
	},
	{
		name: "sharded-cluster",
		values: `
clickhouse:
  url: clickhouse://migrate:m@ch-1a:9000/gpufleet
  shardURLs:
    - clickhouse://ingest:i@ch-1a:9000,ch-1b:9000/gpufleet_shard
    - clickhouse://ingest:i@ch-2a:9000,ch-2b:9000/gpufleet_shard
migrate: {onCluster: fleet, shardDatabase: gpufleet_shard}
`,
		attribution:  "kubelet",
		nodeSelector: map[string]string{"nvidia.com/gpu.present": "true"},
		autoscaler:   "HorizontalPodAutoscaler",
		secrets:      []string{"gpufleet-clickhouse"},
		shards:       []string{"clickhouse://ingest:i@ch-1a:9000,ch-1b:9000/gpufleet_shard", "clickhouse://ingest:i@ch-2a:9000,ch-2b:9000/gpufleet_shard"},
	},
}

func TestHelmChartRenders(t *testing.T) {
	flush := sourceDuration(t, "agent/agent.go", "flushTimeout")
	ingestFlush := sourceDuration(t, "ingest/ingest.go", "shutdownFlush")
	flags := commandFlags(t)
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			files, err := renderChart(t, tc.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			objs := decodeObjects(t, files)
			for _, o := range objs {
				if o.namespace != helmNamespace {
					t.Errorf("%s %s: namespace %q, want %q (plain manifests are applied as they are)", o.kind, o.name, o.namespace, helmNamespace)
				}
			}
			checkAgent(t, tc, objs, flush)
			checkSecurity(t, tc, objs)
			checkFlags(t, objs, flags)
			checkSecrets(t, tc, objs)
			checkKafkaFiles(t, tc, objs)
			checkScaling(t, tc, objs)
			if d := find[appsv1.Deployment](t, objs, "gpufleet-ingest"); d != nil {
				if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= ingestFlush {
					t.Errorf("ingest terminationGracePeriodSeconds %s, want above ingest's shutdown flush %v", ptrString(g), ingestFlush)
				}
				// Readiness is /readyz (every worker joined its group), not only a live process.
				c := d.Spec.Template.Spec.Containers[0]
				if l, r := c.LivenessProbe, c.ReadinessProbe; l == nil || l.HTTPGet == nil || l.HTTPGet.Path != "/healthz" ||
					r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/readyz" {
					t.Errorf("ingest probes %+v / %+v, want GET /healthz and /readyz", l, r)
				}
			}
			checkHooks(t, objs)
			checkSharding(t, tc, objs)
			checkMonitoring(t, tc, objs)
			checkServedPorts(t, objs)
		})
	}
}

func checkAgent(t *testing.T, tc helmCase, objs []object, flush time.Duration) {
	t.Helper()
	ds := find[appsv1.DaemonSet](t, objs, "gpufleet-agent")
	if ds == nil {
		t.Fatal("no DaemonSet gpufleet-agent")
	}
	p := ds.Spec.Template.Spec
	if !equalMaps(p.NodeSelector, tc.nodeSelector) {
		t.Errorf("agent nodeSelector %v, want %v", p.NodeSelector, tc.nodeSelector)
	}
	if !slices.ContainsFunc(p.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == "nvidia.com/gpu" && tol.Operator == corev1.TolerationOpExists && tol.Effect == corev1.TaintEffectNoSchedule
	}) {
		t.Errorf("agent tolerations %v: none for the nvidia.com/gpu:NoSchedule taint of GPU nodes", p.Tolerations)
	}
	if p.RuntimeClassName == nil || *p.RuntimeClassName != "nvidia" {
		t.Errorf("agent runtimeClassName %v, want nvidia (the runtime that mounts libnvidia-ml.so.1)", p.RuntimeClassName)
	}
	if want := tc.attribution == "slurmCgroups"; p.HostPID != want {
		t.Errorf("agent hostPID %v with attribution %s, want %v: only cgroup attribution reads other processes' /proc", p.HostPID, tc.attribution, want)
	}
	if p.HostNetwork || p.HostIPC {
		t.Errorf("agent hostNetwork %v, hostIPC %v: it needs neither", p.HostNetwork, p.HostIPC)
	}
	if g := p.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= flush {
		t.Errorf("agent terminationGracePeriodSeconds %s, want above the agent's flush time %v", ptrString(g), flush)
	}
	if len(p.Containers) != 1 {
		t.Fatalf("agent pod has %d containers, want 1", len(p.Containers))
	}
	c := p.Containers[0]
	if node, ok := envVar(c, "GPUFLEET_NODE"); !ok || node.ValueFrom == nil || node.ValueFrom.FieldRef == nil || node.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("agent GPUFLEET_NODE %+v, want the downward API's spec.nodeName", node)
	}
	if src, _ := envVar(c, "GPUFLEET_SOURCE"); src.Value != "nvml" {
		t.Errorf("agent GPUFLEET_SOURCE %q, want nvml", src.Value)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("agent resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	for what, want := range map[string]struct {
		pr   *corev1.Probe
		path string
	}{"liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		if pr := want.pr; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != want.path || pr.HTTPGet.Port.String() != "metrics" {
			t.Errorf("agent %s probe %+v, want GET %s on the metrics port", what, pr, want.path)
		}
	}
	addr, _ := envVar(c, "GPUFLEET_METRICS_ADDR")
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
		return cp.Name == "metrics" && addr.Value == fmt.Sprintf(":%d", cp.ContainerPort)
	}) {
		t.Errorf("agent GPUFLEET_METRICS_ADDR %q is not the metrics port %v on every interface", addr.Value, c.Ports)
	}

	// The kubelet's pod-resources socket, read-only, exactly when the attribution reads it.
	mount, mounted := mountOf(c, "pod-resources")
	vol, _ := volumeOf(&p, "pod-resources")
	socket, _ := envVar(c, "GPUFLEET_POD_RESOURCES_SOCKET")
	switch tc.attribution {
	case "kubelet":
		if !mounted || !mount.ReadOnly || mount.MountPath != "/var/lib/kubelet/pod-resources" {
			t.Errorf("agent pod-resources mount %+v (mounted %v), want /var/lib/kubelet/pod-resources read-only", mount, mounted)
		}
		if vol.HostPath == nil || vol.HostPath.Path != "/var/lib/kubelet/pod-resources" {
			t.Errorf("agent pod-resources volume %+v, want the host's /var/lib/kubelet/pod-resources", vol)
		}
		if socket.Value != path.Join(mount.MountPath, "kubelet.sock") {
			t.Errorf("agent GPUFLEET_POD_RESOURCES_SOCKET %q is not in the mount %q", socket.Value, mount.MountPath)
		}
	default:
		if mounted || vol.HostPath != nil {
			t.Errorf("agent mounts the kubelet's pod-resources with attribution %s", tc.attribution)
		}
		if !slices.Contains(c.Args, "--pod-resources-socket=") {
			t.Errorf("agent args %v: want --pod-resources-socket= to turn the kubelet attribution off", c.Args)
		}
	}
	if cg, _ := envVar(c, "GPUFLEET_SLURM_CGROUPS"); (cg.Value == "true") != (tc.attribution == "slurmCgroups") {
		t.Errorf("agent GPUFLEET_SLURM_CGROUPS %q with attribution %s", cg.Value, tc.attribution)
	}

	// The spool: in GPUFLEET_STATE_DIR, on the volume the values chose.
	state, _ := envVar(c, "GPUFLEET_STATE_DIR")
	sm, ok := mountOf(c, "state")
	if !ok || sm.MountPath != state.Value || sm.ReadOnly {
		t.Errorf("agent state mount %+v, want GPUFLEET_STATE_DIR %q writable", sm, state.Value)
	}
	sv, _ := volumeOf(&p, "state")
	if tc.hostPathPool {
		if sv.HostPath == nil || sv.HostPath.Path != "/var/lib/gpufleet" {
			t.Errorf("agent state volume %+v, want hostPath /var/lib/gpufleet", sv.VolumeSource)
		}
		if tc.agentUID != 0 && (len(p.InitContainers) != 1 || p.InitContainers[0].Name != "spool-owner") {
			t.Errorf("agent init containers %v: a non-root agent on a hostPath spool needs spool-owner", p.InitContainers)
		}
	} else if sv.EmptyDir == nil || sv.EmptyDir.SizeLimit == nil {
		t.Errorf("agent state volume %+v, want an emptyDir with a size limit", sv.VolumeSource)
	}
}

// checkSecurity: every container non-root (the agent as the values say), read-only root, no
// privilege escalation, every capability dropped, seccomp RuntimeDefault; no service account token.
func checkSecurity(t *testing.T, tc helmCase, objs []object) {
	t.Helper()
	for _, o := range objs {
		p, ok := podOf(o)
		if !ok {
			continue
		}
		if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
			t.Errorf("%s %s: automountServiceAccountToken %v, want false (nothing calls the API server)", o.kind, o.name, p.AutomountServiceAccountToken)
		}
		if p.SecurityContext == nil || p.SecurityContext.SeccompProfile == nil || p.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s %s: pod seccompProfile not RuntimeDefault", o.kind, o.name)
		}
		for _, c := range append(slices.Clone(p.InitContainers), p.Containers...) {
			sc := c.SecurityContext
			where := fmt.Sprintf("%s %s container %s", o.kind, o.name, c.Name)
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation not false", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem not true", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s: capabilities %+v, want drop [ALL]", where, sc.Capabilities)
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile not RuntimeDefault", where)
			}
			wantUID, wantAdd := int64(65532), []corev1.Capability(nil)
			switch {
			case c.Name == "agent":
				wantUID = tc.agentUID
			case c.Name == "spool-owner":
				wantUID, wantAdd = 0, []corev1.Capability{"CHOWN", "FOWNER"}
			}
			if sc.RunAsUser == nil || *sc.RunAsUser != wantUID {
				t.Errorf("%s: runAsUser %v, want %d", where, sc.RunAsUser, wantUID)
			}
			if sc.RunAsNonRoot == nil || *sc.RunAsNonRoot != (wantUID != 0) {
				t.Errorf("%s: runAsNonRoot %v with uid %d", where, sc.RunAsNonRoot, wantUID)
			}
			if sc.Capabilities != nil && !slices.Equal(sc.Capabilities.Add, wantAdd) {
				t.Errorf("%s: adds capabilities %v, want %v", where, sc.Capabilities.Add, wantAdd)
			}
		}
	}
}

// checkFlags: every GPUFLEET_* variable and --flag argument is a flag of the subcommand the
// container runs, by that subcommand's --help.
func checkFlags(t *testing.T, objs []object, flags map[string]map[string]bool) {
	t.Helper()
	for _, o := range objs {
		p, ok := podOf(o)
		if !ok {
			continue
		}
		for _, c := range p.Containers {
			if len(c.Args) == 0 {
				t.Errorf("%s %s: container %s has no subcommand in args", o.kind, o.name, c.Name)
				continue
			}
			known, ok := flags[c.Args[0]]
			if !ok {
				t.Errorf("%s %s: args %v: unknown subcommand", o.kind, o.name, c.Args)
				continue
			}
			for _, e := range c.Env {
				name, ok := strings.CutPrefix(e.Name, "GPUFLEET_")
				if !ok {
					continue
				}
				if flag := strings.ToLower(strings.ReplaceAll(name, "_", "-")); !known[flag] {
					t.Errorf("%s %s: %s is no flag of gpufleet %s (--%s)", o.kind, o.name, e.Name, c.Args[0], flag)
				}
			}
			for _, a := range c.Args[1:] {
				flag, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !known[flag] {
					t.Errorf("%s %s: argument %q is no flag of gpufleet %s", o.kind, o.name, a, c.Args[0])
				}
			}
		}
	}
}

// checkSecrets: the chart renders exactly the Secrets the values leave to it, and every secret a
// pod reads is one of them or one the values name.
func checkSecrets(t *testing.T, tc helmCase, objs []object) {
	t.Helper()
	var got []string
	rendered := map[string]*corev1.Secret{}
	for _, o := range objs {
		if s, ok := o.obj.(*corev1.Secret); ok {
			got = append(got, o.name)
			rendered[o.name] = s
		}
	}
	if !equalSets(got, tc.secrets) {
		t.Errorf("Secrets %v, want %v", got, tc.secrets)
	}
	for _, o := range objs {
		p, ok := podOf(o)
		if !ok {
			continue
		}
		for _, c := range p.Containers {
			for _, e := range c.Env {
				if e.Value != "" && strings.Contains(e.Value, "://") && strings.Contains(e.Value, "@") {
					t.Errorf("%s %s: %s holds a DSN with credentials in plain text; want a secretKeyRef", o.kind, o.name, e.Name)
				}
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if s, ok := rendered[ref.Name]; ok {
					if _, ok := s.StringData[ref.Key]; !ok {
						t.Errorf("%s %s: %s reads key %q the Secret %s does not have", o.kind, o.name, e.Name, ref.Key, ref.Name)
					}
				} else if !strings.Contains(tc.values, ref.Name) {
					t.Errorf("%s %s: %s reads Secret %s, neither rendered nor named in the values", o.kind, o.name, e.Name, ref.Name)
				}
			}
		}
	}
}

// checkKafkaFiles: each Kafka client's credential files are projected from its own keys, and the
// variables point at them.
func checkKafkaFiles(t *testing.T, tc helmCase, objs []object) {
	t.Helper()
	for name, who := range map[string]string{"gpufleet-agent": "agent", "gpufleet-ingest": "ingest", "gpufleet-topics": "topics"} {
		var p *corev1.PodSpec
		for _, o := range objs {
			if pp, ok := podOf(o); ok && o.name == name {
				p = pp
			}
		}
		if p == nil {
			t.Fatalf("no workload %s", name)
		}
		vol, ok := volumeOf(p, "kafka-credentials")
		if len(tc.kafkaFiles) == 0 {
			if ok {
				t.Errorf("%s mounts Kafka credentials with none configured", name)
			}
			continue
		}
		if !ok || vol.Projected == nil {
			t.Errorf("%s: no projected kafka-credentials volume", name)
			continue
		}
		var paths []string
		for _, src := range vol.Projected.Sources {
			for _, it := range src.Secret.Items {
				paths = append(paths, it.Path)
				if it.Path == "sasl-password" && it.Key != who+"-password" {
					t.Errorf("%s reads the SASL password from key %q, want %s-password", name, it.Key, who)
				}
			}
		}
		if !equalSets(paths, tc.kafkaFiles) {
			t.Errorf("%s Kafka credential files %v, want %v", name, paths, tc.kafkaFiles)
		}
		c := p.Containers[0]
		m, _ := mountOf(c, "kafka-credentials")
		for env, file := range map[string]string{"GPUFLEET_KAFKA_SASL_PASSWORD_FILE": "sasl-password", "GPUFLEET_KAFKA_TLS_CA": "ca.crt",
			"GPUFLEET_KAFKA_TLS_CERT": "tls.crt", "GPUFLEET_KAFKA_TLS_KEY": "tls.key"} {
			e, set := envVar(c, env)
			if want := slices.Contains(tc.kafkaFiles, file); set != want || (set && e.Value != path.Join(m.MountPath, file)) {
				t.Errorf("%s %s %q (set %v), want %v at %s", name, env, e.Value, set, want, path.Join(m.MountPath, file))
			}
		}
		if u, _ := envVar(c, "GPUFLEET_KAFKA_SASL_USER"); slices.Contains(tc.kafkaFiles, "sasl-password") && u.Value == "" {
			t.Errorf("%s: SASL without GPUFLEET_KAFKA_SASL_USER", name)
		}
	}
}

// checkScaling: ingest is scaled by the autoscaler the values chose, on consumer lag, and is not
// given a fixed replica count that would fight it; PDBs cover ingest and the api.
func checkScaling(t *testing.T, tc helmCase, objs []object) {
	t.Helper()
	dep := find[appsv1.Deployment](t, objs, "gpufleet-ingest")
	if dep == nil {
		t.Fatal("no Deployment gpufleet-ingest")
	}
	if dep.Spec.Replicas != nil {
		t.Errorf("ingest replicas %d set with an autoscaler: every upgrade would reset them", *dep.Spec.Replicas)
	}
	hpa := find[autoscalingv2.HorizontalPodAutoscaler](t, objs, "gpufleet-ingest")
	so := find[kedaScaledObject](t, objs, "gpufleet-ingest")
	switch tc.autoscaler {
	case "HorizontalPodAutoscaler":
		if hpa == nil || so != nil {
			t.Fatalf("HPA %v, ScaledObject %v: want only the HPA", hpa != nil, so != nil)
		}
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Name {
			t.Errorf("HPA scales %+v, want Deployment %s", hpa.Spec.ScaleTargetRef, dep.Name)
		}
		if !slices.ContainsFunc(hpa.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
			return m.Type == autoscalingv2.ExternalMetricSourceType && m.External != nil &&
				strings.Contains(m.External.Metric.Name, "lag") && m.External.Target.AverageValue != nil
		}) {
			t.Errorf("HPA metrics %+v: none on consumer lag (an External metric with an average value)", hpa.Spec.Metrics)
		}
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 1 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
			t.Errorf("HPA replicas %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
		}
	case "ScaledObject":
		if so == nil || hpa != nil {
			t.Fatalf("HPA %v, ScaledObject %v: want only the ScaledObject (KEDA makes its own HPA)", hpa != nil, so != nil)
		}
		if so.Spec.ScaleTargetRef.Name != dep.Name || len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
			t.Fatalf("ScaledObject %+v, want one kafka trigger on %s", so.Spec, dep.Name)
		}
		md := so.Spec.Triggers[0].Metadata
		group, _ := envVar(dep.Spec.Template.Spec.Containers[0], "GPUFLEET_GROUP")
		if md["consumerGroup"] != group.Value || md["bootstrapServers"] == "" || md["lagThreshold"] == "" {
			t.Errorf("kafka trigger metadata %v, want ingest's group %q, the brokers and a lag threshold", md, group.Value)
		}
		ref := so.Spec.Triggers[0].AuthenticationRef
		if ref == nil || find[kedaTriggerAuthentication](t, objs, ref.Name) == nil {
			t.Errorf("kafka trigger authenticationRef %+v: no such TriggerAuthentication, with SASL and TLS on", ref)
		}
	}
	for _, name := range []string{"gpufleet-ingest", "gpufleet-api"} {
		pdb := find[policyv1.PodDisruptionBudget](t, objs, name)
		if pdb == nil {
			t.Errorf("no PodDisruptionBudget %s", name)
			continue
		}
		var pod map[string]string
		for _, o := range objs {
			if d, ok := o.obj.(*appsv1.Deployment); ok && o.name == name {
				pod = d.Spec.Template.Labels
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(k8slabels.Set(pod)) {
			t.Errorf("PDB %s selector %v does not select the Deployment's pods %v", name, pdb.Spec.Selector, pod)
		}
	}
}

// checkHooks: the Jobs and the Secrets they read run before install and upgrade, in order.
func checkHooks(t *testing.T, objs []object) {
	t.Helper()
	weight := map[string]int{}
	for _, o := range objs {
		_, job := o.obj.(*batchv1.Job)
		_, secret := o.obj.(*corev1.Secret)
		if !job && !secret {
			continue
		}
		if o.name == "gpufleet-api-token" {
			continue // read only by the api Deployment, installed with the release
		}
		if o.annots["helm.sh/hook"] != "pre-install,pre-upgrade" {
			t.Errorf("%s %s: helm.sh/hook %q, want pre-install,pre-upgrade", o.kind, o.name, o.annots["helm.sh/hook"])
		}
		w, err := strconv.Atoi(o.annots["helm.sh/hook-weight"])
		if err != nil {
			t.Errorf("%s %s: helm.sh/hook-weight %q", o.kind, o.name, o.annots["helm.sh/hook-weight"])
		}
		weight[o.name] = w
	}
	for _, job := range []string{"gpufleet-topics", "gpufleet-migrate"} {
		j := find[batchv1.Job](t, objs, job)
		if j == nil {
			t.Errorf("no Job %s", job)
			continue
		}
		if j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever || j.Spec.BackoffLimit == nil {
			t.Errorf("Job %s: restartPolicy %q, backoffLimit %v", job, j.Spec.Template.Spec.RestartPolicy, j.Spec.BackoffLimit)
		}
		for s, w := range weight {
			if find[corev1.Secret](t, objs, s) != nil && w >= weight[job] {
				t.Errorf("Secret %s (hook weight %d) is not created before Job %s (%d)", s, w, job, weight[job])
			}
		}
	}
	if weight["gpufleet-topics"] >= weight["gpufleet-migrate"] {
		t.Errorf("topics hook weight %d not before migrate %d", weight["gpufleet-topics"], weight["gpufleet-migrate"])
	}
}

func checkMonitoring(t *testing.T, tc helmCase, objs []object) {
	t.Helper()
	pm := find[podMonitor](t, objs, "gpufleet")
	sm := find[serviceMonitor](t, objs, "gpufleet-api")
	if (pm != nil) != tc.monitoring || (sm != nil) != tc.monitoring {
		t.Fatalf("PodMonitor %v, ServiceMonitor %v, want %v (monitoring.enabled)", pm != nil, sm != nil, tc.monitoring)
	}
	if !tc.monitoring {
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gpufleet-agent", "gpufleet-ingest", "gpufleet-api"} {
		for _, o := range objs {
			if o.name != name || (o.kind != "DaemonSet" && o.kind != "Deployment") {
				continue
			}
			var podLabels map[string]string
			if ds, ok := o.obj.(*appsv1.DaemonSet); ok {
				podLabels = ds.Spec.Template.Labels
			} else {
				podLabels = o.obj.(*appsv1.Deployment).Spec.Template.Labels
			}
			if want := name != "gpufleet-api"; sel.Matches(k8slabels.Set(podLabels)) != want {
				t.Errorf("PodMonitor selects %s: %v, want %v", name, !want, want)
			}
		}
	}
	if ep := sm.Spec.Endpoints; len(ep) != 1 || ep[0].Authorization == nil || ep[0].Authorization.Credentials.Name != "gpufleet-api" {
		t.Errorf("ServiceMonitor endpoints %+v: want the api token from Secret gpufleet-api", ep)
	}
}

// checkServedPorts: every port a Service, probe, NetworkPolicy or monitor names is a port a
// container declares, and the api's Service selects the api's pods.
func checkServedPorts(t *testing.T, objs []object) {
	t.Helper()
	svc := find[corev1.Service](t, objs, "gpufleet-api")
	api := find[appsv1.Deployment](t, objs, "gpufleet-api")
	if svc == nil || api == nil {
		t.Fatal("no api Service or Deployment")
	}
	for k, v := range svc.Spec.Selector {
		if api.Spec.Template.Labels[k] != v {
			t.Errorf("api Service selector %v does not select the api pods %v", svc.Spec.Selector, api.Spec.Template.Labels)
		}
	}
	c := api.Spec.Template.Spec.Containers[0]
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" || c.Ports[0].Name != "http" {
		t.Errorf("api Service ports %+v, container ports %+v", svc.Spec.Ports, c.Ports)
	}
	if h, _ := envVar(c, "GPUFLEET_HTTP"); h.Value != fmt.Sprintf(":%d", c.Ports[0].ContainerPort) {
		t.Errorf("api GPUFLEET_HTTP %q is not its container port %d on every interface", h.Value, c.Ports[0].ContainerPort)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("api readiness probe %+v, want /healthz (which needs no token)", c.ReadinessProbe)
	}
	for _, o := range objs {
		np, ok := o.obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		var pod *corev1.PodSpec
		var podLabels map[string]string
		for _, w := range objs {
			if p, ok := podOf(w); ok && w.name == o.name {
				pod = p
				switch v := w.obj.(type) {
				case *appsv1.DaemonSet:
					podLabels = v.Spec.Template.Labels
				case *appsv1.Deployment:
					podLabels = v.Spec.Template.Labels
				}
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if pod == nil || err != nil || !sel.Matches(k8slabels.Set(podLabels)) {
			t.Errorf("NetworkPolicy %s selects no workload of its name", o.name)
			continue
		}
		if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 ||
			np.Spec.Ingress[0].Ports[0].Port.IntVal != pod.Containers[0].Ports[0].ContainerPort {
			t.Errorf("NetworkPolicy %s ingress %+v, want the container's port %d only", o.name, np.Spec.Ingress, pod.Containers[0].Ports[0].ContainerPort)
		}
		if len(np.Spec.Egress) == 0 {
			t.Errorf("NetworkPolicy %s allows no egress: no DNS, Kafka or ClickHouse", o.name)
		}
	}
}

// TestHelmChartLint runs Helm's own linter (`helm lint --strict`: warnings count) on the chart
// with each value set of helmCases.
func TestHelmChartLint(t *testing.T) {
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := chartutil.ReadValues([]byte(tc.values))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range lint.All(helmChartDir, vals, helmNamespace, false).Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				}
			}
		})
	}
}

func TestHelmChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"agent: {attribution: dcgm}", "agent.attribution"},
		{"agent: {spool: {type: pvc}}", "agent.spool.type"},
		{"ingest: {autoscaling: {type: vpa}}", "ingest.autoscaling.type"},
		{"kafka: {sasl: {mechanism: gssapi}}", "kafka.sasl.mechanism"},
		{"kafka: {tls: {enabled: true, clientCert: true}}", "kafka.tls.cert"},
		{"migrate: {shardDatabase: gpufleet_shard}", "migrate.shardDatabase needs migrate.onCluster"},
		{"migrate: {onCluster: fleet, shardDatabase: gpufleet_shard}", "clickhouse.shardURLs is required"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := renderChart(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render with %s: %v, want an error naming %s", tc.values, err, tc.want)
			}
		})
	}
}

// TestHelmKubernetesManifests: deploy/kubernetes/ is the chart rendered with its default values,
// one file per template; -update rewrites it.
func TestHelmKubernetesManifests(t *testing.T) {
	files, err := renderChart(t, "")
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	const header = "# Rendered from deploy/helm/gpufleet with its default values (release gpufleet, namespace gpufleet)\n" +
		"# by `go test ./deploy/ -run Helm -update`: edit the chart, not this file.\n"
	want := map[string]string{}
	for name, text := range files {
		want[name] = header + strings.TrimLeft(text, "\n")
	}
	if *update {
		if err := os.RemoveAll(kubernetesDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(kubernetesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, text := range want {
			if err := os.WriteFile(filepath.Join(kubernetesDir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(kubernetesDir)
	if err != nil {
		t.Fatalf("%v (write it with -update)", err)
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
		text, err := os.ReadFile(filepath.Join(kubernetesDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[e.Name()]; !ok {
			t.Errorf("%s/%s is no template of the chart's default render", kubernetesDir, e.Name())
		} else if string(text) != w {
			t.Errorf("%s/%s differs from a fresh render of the chart's default values (rewrite with -update)", kubernetesDir, e.Name())
		}
	}
	for name := range want {
		if !slices.Contains(have, name) {
			t.Errorf("%s/%s missing: the default render has it (write it with -update)", kubernetesDir, name)
		}
	}
	// The plain manifests decode as strictly as the render.
	read := map[string]string{}
	for _, name := range have {
		b, _ := os.ReadFile(filepath.Join(kubernetesDir, name))
		read[name] = string(b)
	}
	if len(decodeObjects(t, read)) == 0 {
		t.Error("deploy/kubernetes/ holds no objects")
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// checkSharding: on a sharded cluster ingest reads its shards' DSNs (GPUFLEET_SHARDS, from the
// Secret, separated by spaces as --shards wants them) and not --clickhouse, which it would refuse
// beside them; migrate gets the shard database. Otherwise neither appears.
func checkSharding(t *testing.T, tc helmCase, objs []object) {
	t.Helper()
	d := find[appsv1.Deployment](t, objs, "gpufleet-ingest")
	j := find[batchv1.Job](t, objs, "gpufleet-migrate")
	if d == nil || j == nil {
		t.Fatal("no ingest Deployment or migrate Job")
	}
	in, mig := d.Spec.Template.Spec.Containers[0], j.Spec.Template.Spec.Containers[0]
	shards, hasShards := envVar(in, "GPUFLEET_SHARDS")
	_, hasDSN := envVar(in, "GPUFLEET_CLICKHOUSE")
	db, hasDB := envVar(mig, "GPUFLEET_SHARD_DATABASE")
	if len(tc.shards) == 0 {
		if hasShards || !hasDSN || hasDB {
			t.Errorf("unsharded: ingest GPUFLEET_SHARDS %v, GPUFLEET_CLICKHOUSE %v, migrate GPUFLEET_SHARD_DATABASE %v; want only the DSN", hasShards, hasDSN, hasDB)
		}
		return
	}
	if !hasShards || hasDSN || shards.ValueFrom == nil || shards.ValueFrom.SecretKeyRef == nil || shards.ValueFrom.SecretKeyRef.Key != "shards" {
		t.Errorf("sharded: ingest GPUFLEET_SHARDS %+v (GPUFLEET_CLICKHOUSE set: %v); want it from the Secret's key shards, and no DSN", shards, hasDSN)
	}
	if sec := find[corev1.Secret](t, objs, "gpufleet-clickhouse"); sec == nil || sec.StringData["shards"] != strings.Join(tc.shards, " ") {
		t.Errorf("Secret gpufleet-clickhouse %+v: want key shards %q", sec, strings.Join(tc.shards, " "))
	}
	if !hasDB || db.Value != "gpufleet_shard" {
		t.Errorf("migrate GPUFLEET_SHARD_DATABASE %+v, want gpufleet_shard", db)
	}
}
