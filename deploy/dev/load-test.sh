#!/usr/bin/env bash
# A load test of one ingest process and chDB: a throwaway broker, `gpufleet simulate` streaming GPUS
# simulated GPUs with its clock SPEED times faster than real time (the load of GPUS × SPEED GPUs at
# 1 Hz), and `gpufleet ingest` into a fresh chDB directory, for SECONDS. Every 30 s it prints what
# the simulator sent, what ingest inserted and the consumer lag; at the end, whether the lag stayed
# bounded, i.e. whether this box sustains that fleet (docs/capacity.md, "Load test"). Ingest cuts
# its batches at 5 s / SPEED, so that a block holds five readings of each GPU as at the default.
#   deploy/dev/load-test.sh [GPUS] [SPEED] [SECONDS] [PARTITIONS]
# Defaults: 20,000 GPUs at 5× (100,000 GPUs at 1 Hz), 600 s, 8 partitions; FOLD=false: gpu_1m by its
# view rather than folded by ingest. Needs GPUFLEET_LIBCHDB
# (deploy/dev/chdb.sh install) and the Kafka jars (deploy/dev/kafka.sh install).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
gpus=${1:-20000}
speed=${2:-5}
secs=${3:-600}
parts=${4:-8}
: "${GPUFLEET_LIBCHDB:?set GPUFLEET_LIBCHDB=\$(deploy/dev/chdb.sh install)}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$here/kafka.sh" stop "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$root" && go build -o "$work/gpufleet" ./cmd/gpufleet)
g="$work/gpufleet"
broker=$(bash "$here/kafka.sh" start "$work/kafka" 29192)
"$g" topics --brokers "$broker" --partitions "$parts" --log-level error >/dev/null
metrics=127.0.0.1:29410
# A batch age of 5 s / SPEED: a block then holds five simulated seconds of each GPU, as the default
# 5 s does for a real fleet at 1 Hz; the rollups' price is set by that (docs/rollups.md). The fold
# age likewise (30 s / SPEED), so that a fold of gpu_1m holds 30 simulated seconds; FOLD=false
# leaves gpu_1m to its view.
fold_age=$((30000 / speed)); ((fold_age < 1000)) && fold_age=1000
"$g" ingest --brokers "$broker" --clickhouse "chdb://$work/data" --migrate --metrics-addr "$metrics" \
  --batch-age "$((5000 / speed))ms" --fold="${FOLD:-true}" --fold-age "${fold_age}ms" \
  --log-level warn >"$work/ingest.log" 2>&1 &
pids+=($!)
# Ingest is up once it serves /metrics.
for _ in $(seq 1 120); do curl -sf "http://$metrics/metrics" >/dev/null && break; sleep 0.5; done
"$g" simulate --brokers "$broker" --gpus "$gpus" --speed "$speed" --for "${secs}s" --metrics-addr "" \
  --failure-scale 0 --log-json >"$work/simulate.log" 2>&1 &
sim=$!
pids+=($sim)

scrape() { # metric name: the sum of its series
  curl -sf "http://$metrics/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { printf "%.0f", s }'
}
printf 'load: %d GPUs at %d× = %d GPUs at 1 Hz, %d partitions, %d s\n' "$gpus" "$speed" $((gpus * speed)) "$parts" "$secs"
printf '%8s %14s %14s %14s %12s\n' elapsed sent/s inserted/s inserted lag_msgs
start=$(date +%s)
prev_rows=0 prev_t=$start maxlag=0 lags=()
while kill -0 "$sim" 2>/dev/null; do
  sleep 30
  now=$(date +%s)
  rows=$(scrape gpufleet_ingest_sample_rows_total)
  lag=$(scrape gpufleet_ingest_consumer_lag_messages)
  sent=$(grep '"msg":"progress"' "$work/simulate.log" | tail -1 | sed -n 's/.*"samples_per_s":\([0-9.e+]*\).*/\1/p')
  rate=$(( (rows - prev_rows) / (now - prev_t) ))
  printf '%7ds %14s %14d %14d %12d\n' $((now - start)) "${sent:-?}" "$rate" "$rows" "$lag"
  lags+=("$lag")
  ((lag > maxlag)) && maxlag=$lag
  prev_rows=$rows prev_t=$now
done
wait "$sim" || { echo "simulate failed:"; tail -5 "$work/simulate.log"; exit 1; }
total=$(grep '"msg":"stopped"' "$work/simulate.log" | sed -n 's/.*"samples":\([0-9]*\).*/\1/p')
# Drain: how long ingest takes to insert what is left.
drain_start=$(date +%s)
for _ in $(seq 1 600); do
  rows=$(scrape gpufleet_ingest_sample_rows_total)
  [ "$rows" -ge "${total:-0}" ] && break
  sleep 1
done
drain=$(( $(date +%s) - drain_start ))
rows=$(scrape gpufleet_ingest_sample_rows_total)
n=${#lags[@]}
mid=${lags[$((n / 2))]:-0}
last=${lags[$((n - 1))]:-0}
printf 'sent %s samples, inserted %s; %d s to drain after the simulator stopped; lag max %d, at half time %d, at the end %d messages\n' \
  "${total:-?}" "$rows" "$drain" "$maxlag" "$mid" "$last"
# Bounded: the lag at the end is no more than at half time plus five seconds of the fleet's sends
# (each node sends SPEED messages a second): a lag that keeps growing means ingest falls behind.
nodes=$((gpus / 8))
if ((last <= mid + 5 * speed * nodes)); then
  printf 'sustained: %d GPUs at 1 Hz (lag bounded); inserted %d samples/s over the run\n' $((gpus * speed)) $((rows / (secs + drain)))
else
  printf 'NOT sustained: %d GPUs at 1 Hz (lag grew from %d to %d messages); ingest inserted %d samples/s over the run\n' \
    $((gpus * speed)) "$mid" "$last" $((rows / (secs + drain)))
fi
