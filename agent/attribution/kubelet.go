package attribution

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// DefaultPodResourcesSocket is where the kubelet serves its pod-resources API.
const DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// DefaultGPUResources are the extended resources NVIDIA's device plugin allocates GPUs as: whole
// GPUs, time-sliced replicas renamed by its sharing config, and under the mixed MIG strategy one
// resource per MIG profile (nvidia.com/mig-1g.10gb, …), whose device ids are the MIG instances'
// UUIDs, the uuid of their own rows.
var DefaultGPUResources = []string{"nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*"}

// CheckResources reports the first resource pattern that is not a resource name, optionally
// ending in one '*' (a prefix).
func CheckResources(patterns []string) error {
	for _, r := range patterns {
		name := strings.TrimSuffix(r, "*")
		if name == "" || strings.ContainsAny(name, "* \t\n,") || len(r) > 253 {
			return fmt.Errorf("GPU resource %q: want a resource name such as nvidia.com/gpu, optionally ending in * (nvidia.com/mig-*)", r)
		}
	}
	return nil
}

func matchResource(patterns []string, name string) bool {
	for _, r := range patterns {
		if p, ok := strings.CutSuffix(r, "*"); ok && strings.HasPrefix(name, p) || r == name {
			return true
		}
	}
	return false
}

// PodResources asks the kubelet which pod holds each GPU, through the pod-resources API
// (v1.PodResourcesLister/List, the API dcgm-exporter's Kubernetes mode reads). A GPU or MIG
// instance allocated to a container is named "namespace/pod" by its UUID (by its index when the
// device plugin runs with DEVICE_ID_STRATEGY=index); other GPUs run no job.
//
// The client is a unary gRPC call over HTTP/2 on the unix socket, with the two messages it reads
// decoded by protowire: that keeps grpc-go and the kubelet's API module out of the agent binary.
type PodResources struct {
	// Socket is the kubelet's pod-resources socket; default DefaultPodResourcesSocket.
	Socket string
	// Resources are the extended resources GPUs are allocated as, each a name or a prefix ending in
	// '*'; default DefaultGPUResources.
	Resources []string
	// Timeout bounds one List call; default 1 s: the call is made in the sampling loop.
	Timeout time.Duration
	// MaxAge is how long an answer is reused; default 10 s. Allocations change when pods start and
	// stop, not every sample, and the kubelet is spared a call per GPU node per second.
	MaxAge time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time

	client *http.Client
	cached map[string]string
	at     time.Time
}

// NewPodResources returns a client for the socket (empty: the default).
func NewPodResources(socket string) *PodResources {
	p := &PodResources{Socket: socket, Resources: DefaultGPUResources, Timeout: time.Second, MaxAge: 10 * time.Second, Now: time.Now}
	if p.Socket == "" {
		p.Socket = DefaultPodResourcesSocket
	}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true) // gRPC without TLS: HTTP/2 with prior knowledge
	p.client = &http.Client{Transport: &http.Transport{
		Protocols: protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.Socket)
		},
	}}
	return p
}

// Jobs returns the "namespace/pod" holding each GPU, by GPU UUID: the kubelet's answer, or the
// last one when it is younger than MaxAge. Not safe for concurrent use (the agent asks from its one
// sampling loop).
func (p *PodResources) Jobs(ctx context.Context) (map[string]string, error) {
	now := p.Now()
	if p.cached != nil && now.Sub(p.at) < p.MaxAge {
		return p.cached, nil
	}
	jobs, err := p.list(ctx)
	if err != nil {
		return nil, err
	}
	p.cached, p.at = jobs, now
	return jobs, nil
}

func (p *PodResources) list(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	// An empty ListPodResourcesRequest: the 5-byte gRPC frame header (not compressed, length 0).
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/v1.PodResourcesLister/List",
		bytes.NewReader(make([]byte, 5)))
	if err != nil {
		return nil, fmt.Errorf("pod resources: %w", err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pod resources: list on %s: %w", p.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPodResourcesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pod resources: read: %w", err)
	}
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status") // a trailers-only error response
	}
	if resp.StatusCode != http.StatusOK || status != "0" {
		return nil, fmt.Errorf("pod resources: list: HTTP %d, grpc-status %q: %s", resp.StatusCode, status,
			resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	return p.decodeResponse(body)
}

// decodeResponse reads a List response body: one uncompressed gRPC message (a zero flag byte, the
// big-endian length, the ListPodResourcesResponse), at most maxPodResourcesBytes in all.
func (p *PodResources) decodeResponse(body []byte) (map[string]string, error) {
	if len(body) > maxPodResourcesBytes {
		return nil, fmt.Errorf("pod resources: response over %d bytes", maxPodResourcesBytes)
	}
	if len(body) < 5 || body[0] != 0 || uint64(binary.BigEndian.Uint32(body[1:5])) != uint64(len(body)-5) {
		return nil, errors.New("pod resources: response is not one uncompressed gRPC message")
	}
	return p.decodeList(body[5:])
}

// maxPodResourcesBytes bounds a List response: a node's pods and their devices are kilobytes.
const maxPodResourcesBytes = 16 << 20

// decodeList reads ListPodResourcesResponse{repeated PodResources pod_resources = 1}, where
// PodResources{name = 1, namespace = 2, repeated ContainerResources containers = 3},
// ContainerResources{name = 1, repeated ContainerDevices devices = 2} and
// ContainerDevices{resource_name = 1, repeated string device_ids = 2}. Other fields are skipped.
func (p *PodResources) decodeList(b []byte) (map[string]string, error) {
	out := map[string]string{}
	err := eachField(b, func(num protowire.Number, v []byte) error {
		if num != 1 {
			return nil
		}
		var name, namespace string
		var containers [][]byte
		if err := eachField(v, func(num protowire.Number, v []byte) error {
			switch num {
			case 1:
				name = string(v)
			case 2:
				namespace = string(v)
			case 3:
				containers = append(containers, v)
			}
			return nil
		}); err != nil {
			return err
		}
		job := boundJob(namespace + "/" + name)
		for _, c := range containers {
			if err := eachField(c, func(num protowire.Number, v []byte) error {
				if num != 2 {
					return nil
				}
				var resource string
				var ids []string
				if err := eachField(v, func(num protowire.Number, v []byte) error {
					switch num {
					case 1:
						resource = string(v)
					case 2:
						ids = append(ids, string(v))
					}
					return nil
				}); err != nil {
					return err
				}
				if matchResource(p.Resources, resource) {
					for _, id := range ids {
						// A time-sliced replica is "<uuid>::<n>": the GPU is the uuid. Pods
						// sharing a GPU: the first by namespace/name, so the answer does not
						// depend on the kubelet's order.
						id, _, _ = strings.Cut(strings.TrimSpace(id), "::")
						if prev, ok := out[id]; !ok || job < prev {
							out[id] = job
						}
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod resources: %w", err)
	}
	return out, nil
}

// eachField calls use with the number and bytes of every length-delimited field of message b,
// skipping fields of other wire types.
func eachField(b []byte, use func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("malformed message: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("malformed message: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("malformed message: %w", protowire.ParseError(n))
		}
		if err := use(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
