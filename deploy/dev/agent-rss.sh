#!/usr/bin/env bash
# Prints the agent's peak resident memory: starts a throwaway broker, runs `gpufleet agent --source
# sim` (one 8-GPU node, with a spool) for SECONDS (default 20), and reads VmHWM from /proc.
#   deploy/dev/agent-rss.sh [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-20}
work=$(mktemp -d)
trap 'bash "$here/kafka.sh" stop "$work/kafka" >/dev/null 2>&1; rm -rf "$work"' EXIT
go build -o "$work/gpufleet" "$root/cmd/gpufleet"
broker=$(bash "$here/kafka.sh" start "$work/kafka" 29092)
"$work/gpufleet" agent --source sim --gpus 8 --brokers "$broker" --for "${secs}s" --metrics-addr "" \
  --spool-dir "$work/spool" --log-level warn &
pid=$!
sleep $((secs - 2))
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
wait "$pid"
echo "agent peak RSS: $((hwm / 1024)) MiB ($hwm kB) over ${secs}s"
