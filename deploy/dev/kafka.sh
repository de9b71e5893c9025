#!/usr/bin/env bash
# Installs and runs a real single-node Apache Kafka broker (KRaft) for tests and local development.
#
#   deploy/dev/kafka.sh install                 fetch the broker jars from Maven Central (cached)
#   deploy/dev/kafka.sh start DIR [PORT]        format DIR and start a broker on 127.0.0.1:PORT (default 19092)
#   deploy/dev/kafka.sh stop DIR                stop the broker started in DIR
#   deploy/dev/kafka.sh resume DIR              start a stopped broker again, keeping its data
#   deploy/dev/kafka.sh start-secure DIR [PORT] like start, with one SASL_SSL listener (see start_secure)
#   deploy/dev/kafka.sh start-acl DIR [PORT]    start-secure with the KRaft authorizer: nobody but the
#                                               super user may do anything until ACLs grant it (see start_acl)
#   deploy/dev/kafka.sh acls ARGS...            kafka-acls.sh from the same jars (org.apache.kafka.tools.AclCommand)
#   deploy/dev/kafka.sh start-cluster DIR PORT  three KRaft nodes (broker+controller) in DIR/n1..n3 on
#                                               PORT, PORT+2, PORT+4 (controllers one above each);
#                                               prints the three addresses, comma-separated
#   deploy/dev/kafka.sh kill9 DIR               kill -9 the broker started in DIR (a node: DIR/n2);
#                                               resume DIR starts it again with its data
#
# The jars are cached under $GPUFLEET_CACHE (default: <repo>/.cache), so only the first run downloads.
# Needs java (17+) and mvn on PATH.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${GPUFLEET_CACHE:-$repo/.cache}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
libs=$cache/kafka-$version/libs

die() { echo "kafka.sh: $*" >&2; exit 1; }

install() {
  [ -f "$libs/.complete" ] && return 0
  command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install maven)"
  echo "kafka.sh: fetching Apache Kafka $version jars into $libs" >&2
  rm -rf "$libs"; mkdir -p "$libs"
  (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs") >&2 \
    || die "mvn could not fetch org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)"
  touch "$libs/.complete"
}

free_port() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# storage_props LOG_DIR REPLICAS MIN_ISR AUTO_CREATE: what every broker here shares but for how many
# copies the internal topics keep and whether topics appear on first use.
storage_props() {
  cat <<PROPS
log.dirs=$1
num.partitions=4
offsets.topic.replication.factor=$2
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$2
transaction.state.log.min.isr=$3
share.coordinator.state.topic.replication.factor=$2
share.coordinator.state.topic.min.isr=$3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=$4
PROPS
}

start() {
  local dir=${1:?usage: kafka.sh start DIR [PORT]} port=${2:-19092}
  local cport=$((port + 1))
  install
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "127.0.0.1:$port"; return 0
  fi
  free_port "$port" || die "port $port is in use: pick another with 'kafka.sh start DIR PORT'"
  free_port "$cport" || die "controller port $cport is in use: pick another broker port"
  rm -rf "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
$(storage_props "$dir/data" 1 1 true)
PROPS
  java "${java_opts[@]}" kafka.tools.StorageTool format -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    -c "$dir/server.properties" > "$dir/format.log" 2>&1 || die "formatting the log dir failed: see $dir/format.log"
  launch "$dir" "$port"
}

java_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$here/kafka/log4j2.properties" -cp "$libs/*")

# launch runs the broker configured in DIR and waits until it listens.
launch() {
  local dir=$1 port=$2
  nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >> "$dir/broker.log" 2>&1 &
  echo $! > "$dir/broker.pid"
  for _ in $(seq 1 120); do
    kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null || die "broker exited during start-up: see $dir/broker.log"
    if ! free_port "$port"; then echo "127.0.0.1:$port"; return 0; fi
    sleep 0.5
  done
  die "broker did not listen on 127.0.0.1:$port within 60s: see $dir/broker.log"
}

# start_secure starts a broker whose only client listener is SASL_SSL, with PLAIN, SCRAM-SHA-256
# and SCRAM-SHA-512 enabled and client certificates required. The caller writes DIR/secure first:
#   ca.pem      the CA that signed server.pem and the clients' certificates (the broker's truststore)
#   server.pem  the broker's private key (unencrypted PKCS#8) followed by its certificate chain;
#               the certificate must name 127.0.0.1 and be valid for client auth too (the broker
#               connects to itself as a client on its inter-broker listener)
#   users       one "name password" per line; the first is the broker's own inter-broker user. Each
#               user gets PLAIN and both SCRAM credentials (seeded at format time, the KRaft way).
start_secure() {
  local dir=${1:?usage: kafka.sh start-secure DIR [PORT]} port=${2:-19094}
  local cport=$((port + 1))
  install
  dir=$(cd "$dir" && pwd)
  local sec=$dir/secure
  for f in ca.pem server.pem users; do [ -s "$sec/$f" ] || die "$sec/$f missing: see start_secure in $0"; done
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "127.0.0.1:$port"; return 0
  fi
  free_port "$port" || die "port $port is in use: pick another with 'kafka.sh start-secure DIR PORT'"
  free_port "$cport" || die "controller port $cport is in use: pick another broker port"
  local admin="" admin_pw="" plain_users="" scram=() name pw
  while read -r name pw; do
    [ -n "$name" ] || continue
    [[ "$name$pw" =~ ^[A-Za-z0-9_.-]+$ ]] || die "$sec/users: names and passwords are [A-Za-z0-9_.-] only"
    [ -n "$admin" ] || { admin=$name; admin_pw=$pw; }
    plain_users+=" user_$name=\"$pw\""
    scram+=(--add-scram "SCRAM-SHA-256=[name=$name,password=$pw]" --add-scram "SCRAM-SHA-512=[name=$name,password=$pw]")
  done < "$sec/users"
  [ -n "$admin" ] || die "$sec/users holds no user"
  rm -rf "$dir/data"
  umask 077 # the properties hold the users' passwords
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$admin" password="$admin_pw"$plain_users;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$admin_pw";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$admin_pw";
ssl.keystore.type=PEM
ssl.keystore.location=$sec/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$sec/ca.pem
# A SASL_SSL listener ignores ssl.client.auth unless it carries the listener prefix.
listener.name.sasl_ssl.ssl.client.auth=required
$(storage_props "$dir/data" 1 1 false)
PROPS
  [ -z "${__start_acl_props:-}" ] || printf '%s\n' "$__start_acl_props" >> "$dir/server.properties"
  java "${java_opts[@]}" kafka.tools.StorageTool format -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    -c "$dir/server.properties" "${scram[@]}" > "$dir/format.log" 2>&1 || die "formatting the log dir failed: see $dir/format.log"
  launch "$dir" "$port"
}

# start_acl is start_secure with KRaft's StandardAuthorizer and allow.everyone.if.no.acl.found=false:
# a request no ACL allows is refused, so a test sees exactly what the granted ACLs permit. The
# first user in DIR/secure/users (the broker's own, inter-broker user) is the one super user of the
# client listener, the one that grants ACLs (deploy/kafka/acls.sh); the other users can do nothing
# until granted. User:ANONYMOUS is a super user too: it is how the broker reaches its own controller
# on the loopback PLAINTEXT controller listener (registration, heartbeats). No client can be
# ANONYMOUS, as the only client listener requires SASL. A production cluster secures the
# controller listener instead.
start_acl() {
  local dir=${1:?usage: kafka.sh start-acl DIR [PORT]}
  local first; first=$(awk 'NF { print $1; exit }' "$dir/secure/users" 2>/dev/null) || true
  [ -n "$first" ] || die "$dir/secure/users missing or empty: see start_secure in $0"
  __start_acl_props="# The authorizer: nothing is allowed that no ACL allows.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$first;User:ANONYMOUS" start_secure "$@"
}

# acl_command runs Kafka's ACL tool (what kafka-acls.sh runs) from the broker's jars plus
# kafka-tools, which the broker does not need and install does not fetch: it is fetched here once,
# without its dependencies (the ACL tool uses none of them that the broker lacks).
acl_command() {
  install
  local tools=$cache/kafka-$version/tools
  if [ ! -f "$tools/.complete" ]; then
    echo "kafka.sh: fetching org.apache.kafka:kafka-tools:$version into $tools" >&2
    rm -rf "$tools"; mkdir -p "$tools"
    (cd "$here/kafka" && mvn -q -B dependency:copy -Dartifact="org.apache.kafka:kafka-tools:$version" -DoutputDirectory="$tools") >&2 \
      || die "mvn could not fetch org.apache.kafka:kafka-tools:$version (is Maven Central reachable?)"
    touch "$tools/.complete"
  fi
  java -Xmx256m -Djava.awt.headless=true "-Dlog4j2.configurationFile=$here/kafka/log4j2.properties" \
    -cp "$libs/*:$tools/*" org.apache.kafka.tools.AclCommand "$@"
}

resume() {
  local dir=${1:?usage: kafka.sh resume DIR}
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/server.properties" ] || die "$dir holds no broker: use start"
  local port; port=$(sed -n 's/^advertised.listeners=[A-Z_]*:\/\/127.0.0.1://p' "$dir/server.properties")
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "127.0.0.1:$port"; return 0
  fi
  free_port "$port" || die "port $port is in use"
  launch "$dir" "$port"
}

# start_cluster starts three nodes that are brokers and controllers at once, with a quorum of the
# three, internal topics replicated three times and min.insync.replicas 2: what a leader kill
# needs to lose nothing.
start_cluster() {
  local dir=${1:?usage: kafka.sh start-cluster DIR PORT} port=${2:?usage: kafka.sh start-cluster DIR PORT}
  install
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  local voters="" addrs="" i
  for i in 1 2 3; do
    local p=$((port + 2 * (i - 1)))
    free_port "$p" || die "port $p is in use"
    free_port "$((p + 1))" || die "port $((p + 1)) is in use"
    voters+="${voters:+,}$i@127.0.0.1:$((p + 1))"
    addrs+="${addrs:+,}127.0.0.1:$p"
  done
  local id; id=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
  for i in 1 2 3; do
    local p=$((port + 2 * (i - 1))) n=$dir/n$i
    rm -rf "$n"; mkdir -p "$n"
    cat > "$n/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$((p + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$p
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
$(storage_props "$n/data" 3 2 false)
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
PROPS
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$id" -c "$n/server.properties" > "$n/format.log" 2>&1 \
      || die "formatting $n failed: see $n/format.log"
  done
  # All three at once: a node's broker listener opens only once the controller quorum has formed.
  for i in 1 2 3; do
    nohup java "${java_opts[@]}" kafka.Kafka "$dir/n$i/server.properties" >> "$dir/n$i/broker.log" 2>&1 &
    echo $! > "$dir/n$i/broker.pid"
  done
  for _ in $(seq 1 240); do
    local up=0
    for i in 1 2 3; do
      kill -0 "$(cat "$dir/n$i/broker.pid")" 2>/dev/null || cluster_die "$dir" "node $i exited during start-up: see $dir/n$i/broker.log"
      free_port "$((port + 2 * (i - 1)))" || up=$((up + 1))
    done
    if [ "$up" = 3 ]; then echo "$addrs"; return 0; fi
    sleep 0.5
  done
  cluster_die "$dir" "the cluster did not listen within 120s: see $dir/n*/broker.log"
}

# cluster_die stops the nodes of the cluster in DIR that did start, so a failed start leaves no
# broker holding ports or waiting for a quorum, then dies with the message.
cluster_die() {
  local dir=$1 i; shift
  for i in 1 2 3; do kill9 "$dir/n$i"; done
  die "$@"
}

kill9() {
  local dir=${1:?usage: kafka.sh kill9 DIR}
  [ -f "$dir/broker.pid" ] || return 0
  kill -9 "$(cat "$dir/broker.pid")" 2>/dev/null || true
  rm -f "$dir/broker.pid"
}

stop() {
  local dir=${1:?usage: kafka.sh stop DIR}
  [ -f "$dir/broker.pid" ] || return 0
  local pid; pid=$(cat "$dir/broker.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/broker.pid"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  resume) shift; resume "$@" ;;
  start-secure) shift; start_secure "$@" ;;
  start-acl) shift; start_acl "$@" ;;
  acls) shift; acl_command "$@" ;;
  start-cluster) shift; start_cluster "$@" ;;
  kill9) shift; kill9 "$@" ;;
  *) die "usage: kafka.sh install | start DIR [PORT] | start-secure DIR [PORT] | start-acl DIR [PORT] | acls ARGS... | start-cluster DIR PORT | stop DIR | kill9 DIR | resume DIR" ;;
esac
