#!/usr/bin/env bash
# Prints the agent's peak resident memory: starts a throwaway broker, runs `gpufleet agent --source
# sim` (one 8-GPU node, with a spool) for SECONDS (default 20), and reads VmHWM from /proc — once
# for the agent-only build (make agent: -tags agentonly, what runs on GPU nodes) and once for the
# full gpufleet binary.
#   deploy/dev/agent-rss.sh [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-20}
work=$(mktemp -d)
trap 'bash "$here/kafka.sh" stop "$work/kafka" >/dev/null 2>&1; rm -rf "$work"' EXIT
(cd "$root" && go build -tags agentonly -o "$work/gpufleet-agent" ./cmd/gpufleet && go build -o "$work/gpufleet" ./cmd/gpufleet)
broker=$(bash "$here/kafka.sh" start "$work/kafka" 29092)
"$work/gpufleet" topics --brokers "$broker" --partitions 1 >/dev/null # agents only check that they exist
for bin in gpufleet-agent gpufleet; do
  "$work/$bin" agent --source sim --gpus 8 --brokers "$broker" --for "${secs}s" --metrics-addr "" \
    --spool-dir "$work/spool-$bin" --log-level error &
  pid=$!
  sleep $((secs - 2))
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
  file=$(awk '/RssFile/ {print $2}' "/proc/$pid/status")
  wait "$pid"
  printf '%-15s peak RSS: %d MiB (%d kB; now %d kB anonymous + %d kB of the binary) over %ss, binary %d MiB\n' \
    "$bin" $((hwm / 1024)) "$hwm" "$anon" "$file" "$secs" $(($(stat -c %s "$work/$bin") / 1048576))
done
