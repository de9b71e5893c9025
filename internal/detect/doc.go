// Package detect holds no code: its tests measure and prove the time to detect a GPU failure end
// to end (docs/detect.md). An Xid injected into NVIDIA's NVML mock of a DGX H100
// (internal/health/nvmlmock) goes through the real NVML source and agent, a real Kafka broker and
// ingest into chDB, and is timed until its row is in gpu_events and its GPU is on the drain list
// (query.Drain).
package detect
