#!/usr/bin/env bash
# Runs the agent's NVML path against this machine's real GPUs for 60 s (or $1) and keeps the
# report: NVML call latency by operation, a whole tick's cost, and the metrics each GPU answered.
# For a GPU machine: needs Go and the NVIDIA driver, nothing else (no Kafka, no ClickHouse).
#
#   deploy/dev/gpu-probe.sh [duration]      # writes $OUT/probe.json (the run) and $OUT/probe.txt (10 s, as text)
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-60s}
out=${OUT:-./probe-out}
mkdir -p "$out"
nvidia-smi -L > "$out/nvidia-smi.txt" 2>&1 || true
CGO_ENABLED=1 go build -tags agentonly -o bin/gpufleet-agent ./cmd/gpufleet
bin/gpufleet-agent nvml-probe --for "$dur" --json > "$out/probe.json"
bin/gpufleet-agent nvml-probe --for 10s > "$out/probe.txt"   # the same tables as text, shorter
cat "$out/probe.txt"
