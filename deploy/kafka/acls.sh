#!/usr/bin/env bash
# Grants the pipeline's Kafka users the least they need, with Kafka's own ACL tool (kafka-acls.sh).
# Run it once per cluster, as a user allowed to change ACLs (a super user, or Alter on the cluster):
#
#   deploy/kafka/acls.sh --bootstrap-server kafka-1:9093 --command-config admin.properties
#
# Every argument is handed to each kafka-acls.sh call: --bootstrap-server and --command-config (the
# client properties of the granting user: security.protocol, sasl.*, ssl.*) are what it needs.
# Adding an ACL that exists already changes nothing, so running it again is safe.
#
#   principal (variable)                   granted                                  because
#   agent   (AGENT_PRINCIPAL=User:agent)   Write, Describe on SAMPLES_TOPIC and     the agent and `gpufleet simulate` produce
#                                          EVENTS_TOPIC                             samples and events, and check the topics exist
#   ingest  (INGEST_PRINCIPAL=User:ingest) Read, Describe on SAMPLES_TOPIC,         ingest consumes both topics as consumer group
#                                          EVENTS_TOPIC and group INGEST_GROUP      INGEST_GROUP (join, fetch, commit offsets)
#                                          Write, Describe on DLQ_TOPIC             it writes dead letters
#                                          DescribeConfigs on SAMPLES_TOPIC and     it compares their max.message.bytes at start-up
#                                          DLQ_TOPIC                                (a DLQ that takes less truncates dead letters)
#   admin   (ADMIN_PRINCIPAL=User:admin)   Create, Describe, DescribeConfigs,       `gpufleet topics` creates missing topics and sets
#                                          AlterConfigs on the three topics         min.insync.replicas, max.message.bytes, retention.ms
#
# Nothing else: no one gets Create on the cluster, IdempotentWrite (the producer is not
# idempotent: replays are dropped by ingest's dedup token), Alter (partitions are never added) or
# any right on other topics and groups. The names are variables (defaults in brackets):
#   SAMPLES_TOPIC [gpu.samples]  EVENTS_TOPIC [gpu.events]  DLQ_TOPIC [gpu.dlq]
#   INGEST_GROUP [gpufleet-ingest] (ingest --group)
#   AGENT_PRINCIPAL [User:agent]  INGEST_PRINCIPAL [User:ingest]  ADMIN_PRINCIPAL [User:admin]
#     (a SASL user is User:NAME; a TLS client certificate is User:CN=...,O=... unless the brokers
#     map it with ssl.principal.mapping.rules)
#   KAFKA_ACLS: the tool [kafka-acls.sh on PATH, else kafka-acls, else this repository's
#     deploy/dev/kafka.sh acls, which runs it from the test broker's jars]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "acls.sh: $*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: acls.sh --bootstrap-server HOST:PORT [--command-config FILE] (see the head of $0)"

samples=${SAMPLES_TOPIC:-gpu.samples}
events=${EVENTS_TOPIC:-gpu.events}
dlq=${DLQ_TOPIC:-gpu.dlq}
group=${INGEST_GROUP:-gpufleet-ingest}
agent=${AGENT_PRINCIPAL:-User:agent}
ingest=${INGEST_PRINCIPAL:-User:ingest}
admin=${ADMIN_PRINCIPAL:-User:admin}

if [ -n "${KAFKA_ACLS:-}" ]; then
  read -r -a tool <<< "$KAFKA_ACLS"
elif command -v kafka-acls.sh >/dev/null; then
  tool=(kafka-acls.sh)
elif command -v kafka-acls >/dev/null; then
  tool=(kafka-acls)
elif [ -x "$here/../dev/kafka.sh" ]; then
  tool=("$here/../dev/kafka.sh" acls)
else
  die "no kafka-acls.sh on PATH: set KAFKA_ACLS to Kafka's bin/kafka-acls.sh"
fi

# grant PRINCIPAL OPERATIONS RESOURCES...: one call per rule, as the tool adds every operation on
# every resource given (each operation must apply to each resource's type).
grant() {
  local principal=$1 ops=$2; shift 2
  local args=() op what="" a
  for op in $ops; do args+=(--operation "$op"); done
  for a in "$@"; do
    case $a in --topic) what+="${what:+, }topic " ;; --group) what+="${what:+, }group " ;; *) what+=$a ;; esac
  done
  echo "acls.sh: allow $principal $ops on $what" >&2
  "${tool[@]}" "${cli[@]}" --add --allow-principal "$principal" "${args[@]}" "$@" >/dev/null \
    || die "granting $principal $ops on $* failed (see the tool's output above)"
}

cli=("$@")
grant "$agent" "Write Describe" --topic "$samples" --topic "$events"
grant "$ingest" "Read Describe" --topic "$samples" --topic "$events" --group "$group"
grant "$ingest" "Write Describe" --topic "$dlq"
grant "$ingest" "DescribeConfigs" --topic "$samples" --topic "$dlq"
grant "$admin" "Create Describe DescribeConfigs AlterConfigs" --topic "$samples" --topic "$events" --topic "$dlq"
echo "acls.sh: done" >&2
