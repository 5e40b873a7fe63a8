#!/usr/bin/env bash
# A real single-node Kafka (KRaft, combined broker+controller) for development and CI,
# from the Maven Central jars: no Docker, no tarball download. See README.md beside this file.
#
#   kafka.sh install                         fetch the jars into the cache, print its path
#   kafka.sh start [--port N] [--dir DIR]    format (first time), start, wait until it serves;
#                                            last stdout line: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:N
#   kafka.sh stop  [--dir DIR]               SIGTERM, wait, then SIGKILL
#   kafka.sh kill9 [--dir DIR]               SIGKILL at once (crash tests)
#   kafka.sh status [--dir DIR]              print the bootstrap line and exit 0 if running, else exit 1
#
# Environment: LEADFLOW_KAFKA_HOME (cache, default ~/.cache/leadflow/kafka), LEADFLOW_KAFKA_DIR
# (default --dir, default $LEADFLOW_KAFKA_HOME/run), LEADFLOW_KAFKA_HEAP_OPTS (default
# "-Xms256m -Xmx512m"), LEADFLOW_KAFKA_START_TIMEOUT (s, default 60), LEADFLOW_KAFKA_STOP_TIMEOUT
# (s, default 30), JAVA_HOME (else java on PATH; Java 17+).
#
# A SASL_SSL listener too (SCRAM-SHA-512 over TLS, the production setup; docs/runbook.md):
# LEADFLOW_KAFKA_TLS_CERT, LEADFLOW_KAFKA_TLS_KEY (PEM server certificate chain and its
# unencrypted PKCS#8 key) and LEADFLOW_KAFKA_TLS_CA (PEM CA); LEADFLOW_KAFKA_SCRAM_USERS
# ("name:password name2:password2", added when the storage is formatted). start then
# prints KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:M before the plaintext bootstrap line (the
# plaintext listener stays: readiness and the inter-broker listener use it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
KAFKA_HOME="${LEADFLOW_KAFKA_HOME:-$HOME/.cache/leadflow/kafka}"
LIBS="$KAFKA_HOME/libs"
STAMP="$LIBS/.pom.sha256"
HEAP_OPTS="${LEADFLOW_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${LEADFLOW_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${LEADFLOW_KAFKA_STOP_TIMEOUT:-30}"
TLS_CERT="${LEADFLOW_KAFKA_TLS_CERT:-}"
TLS_KEY="${LEADFLOW_KAFKA_TLS_KEY:-}"
TLS_CA="${LEADFLOW_KAFKA_TLS_CA:-}"
SCRAM_USERS="${LEADFLOW_KAFKA_SCRAM_USERS:-}"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "no java found (Kafka 4 needs Java 17+): install a JDK or set JAVA_HOME"
  fi
}

check_java() {
  local java version major
  java="$(java_bin)"
  version="$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${version%%.*}"
  [[ "$major" == 1 ]] && major="$(cut -d. -f2 <<<"$version")"
  if [[ ! "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
    die "Kafka 4 needs Java 17+, $java is '${version:-unknown}'"
  fi
}

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

installed() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_sum)" ]]; }

cmd_install() {
  if installed; then
    printf '%s\n' "$KAFKA_HOME"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"
  check_java
  mkdir -p "$KAFKA_HOME"
  # One installer at a time (parallel test sessions); the others wait, then find it done.
  exec 9>"$KAFKA_HOME/.install.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if ! installed; then
    local tmp="$KAFKA_HOME/libs.tmp.$$"
    rm -rf "$tmp"
    log "fetching the Kafka jars from Maven Central into $LIBS"
    if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/install.log" 2>&1; then
      grep -E 'ERROR|FAIL' "$KAFKA_HOME/install.log" | head -n 20 >&2 || true
      rm -rf "$tmp"
      die "mvn dependency:copy-dependencies failed (full output: $KAFKA_HOME/install.log)"
    fi
    pom_sum >"$tmp/.pom.sha256"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
  fi
  exec 9>&-
  printf '%s\n' "$KAFKA_HOME"
}

# --- per-run directory helpers -------------------------------------------------------------

DIR=""
PORT=""

parse_opts() {
  while (($#)); do
    case "$1" in
      --port) [[ $# -ge 2 ]] || usage; PORT="$2"; shift 2 ;;
      --port=*) PORT="${1#--port=}"; shift ;;
      --dir) [[ $# -ge 2 ]] || usage; DIR="$2"; shift 2 ;;
      --dir=*) DIR="${1#--dir=}"; shift ;;
      -h | --help) usage 0 ;;
      *) log "unknown option: $1"; usage ;;
    esac
  done
  DIR="${DIR:-${LEADFLOW_KAFKA_DIR:-$KAFKA_HOME/run}}"
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd -P)"
  if [[ -n "$PORT" && ! "$PORT" =~ ^[0-9]+$ ]]; then die "--port must be a number, not '$PORT'"; fi
}

# The pid in DIR/kafka.pid, if that process is alive and is this directory's broker
# (a stale pid file whose number was reused by another process does not count).
running_pid() {
  local pid
  [[ -f "$DIR/kafka.pid" ]] || return 1
  pid="$(cat "$DIR/kafka.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $DIR/server.properties" || return 1
  printf '%s\n' "$pid"
}

saved_port() { # saved_port PORT|CONTROLLER_PORT
  [[ -f "$DIR/ports" ]] && sed -n "s/^$1=//p" "$DIR/ports" | head -n1
  return 0
}

free_ports() { # prints two distinct free TCP ports on 127.0.0.1
  # Below the kernel's ephemeral range when it can: a port from that range (bind to 0)
  # may be taken as the local end of an outgoing connection during the seconds the JVM
  # needs to bind it ("Address already in use" while other tests connect a lot).
  python3 - <<'PY'
import random, socket
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
socks = []
candidates = random.sample(range(max(1024, low - 12000), low), 200) if low > 2048 else []
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s)
    if len(socks) == 2:
        break
while len(socks) < 2:  # no range known, or nothing free below it
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

port_free() { # port_free N: nothing listens on 127.0.0.1:N
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# One ApiVersions (v0) round trip on the broker's listener: proves that the broker answers
# Kafka requests, not merely that its socket accepts connections.
api_versions_ok() {
  python3 - "$1" <<'PY'
import socket, struct, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        client = b"leadflow-kafka-sh"
        req = struct.pack(">hhih", 18, 0, 7, len(client)) + client
        s.sendall(struct.pack(">i", len(req)) + req)
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                sys.exit(1)
            head += chunk
        (size,) = struct.unpack(">i", head)
        body = b""
        while len(body) < size:
            chunk = s.recv(size - len(body))
            if not chunk:
                sys.exit(1)
            body += chunk
    corr, err, count = struct.unpack(">ihi", body[:10])
    sys.exit(0 if corr == 7 and err == 0 and count > 0 else 1)
except OSError:
    sys.exit(1)
PY
}

kafka_uuid() { # a Kafka cluster id: 16 random bytes, url-safe base64 without padding
  python3 -c '
import base64, uuid
while True:
    u = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not u.startswith("-"):
        print(u)
        break'
}

secure() { [[ -n "$TLS_CERT" ]]; }

write_config() { # write_config PORT CONTROLLER_PORT [SASL_SSL_PORT]
  local port="$1" cport="$2" sport="${3:-}"
  cat >"$DIR/server.properties" <<EOF
# Written by deploy/local/kafka/kafka.sh; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a kill -9 the old incarnation stays registered until its session times out (default
# 9 s); a short session makes a crash-restart on the same directory ready in a few seconds.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
  printf 'PORT=%s\nCONTROLLER_PORT=%s\n' "$port" "$cport" >"$DIR/ports"
  if [[ -n "$sport" ]]; then
    # PEM key store: the key and its certificate chain in one file (no JKS, no keytool).
    cat "$TLS_KEY" "$TLS_CERT" >"$DIR/server-keystore.pem"
    chmod 600 "$DIR/server-keystore.pem"
    sed -i \
      -e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$sport|" \
      -e "s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$sport|" \
      -e "s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|" \
      "$DIR/server.properties"
    cat >>"$DIR/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$DIR/server-keystore.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$TLS_CA
EOF
    printf 'SASL_SSL_PORT=%s\n' "$sport" >>"$DIR/ports"
  fi
  cat >"$DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $DIR/server.log
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
}

print_bootstrap() { printf 'KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:%s\n' "$1"; }

cmd_start() {
  parse_opts "$@"
  local pid port cport java
  if pid="$(running_pid)"; then
    port="$(saved_port PORT)"
    if [[ -n "$PORT" && "$PORT" != "$port" ]]; then
      die "a broker already runs in $DIR on port $port (pid $pid); stop it first"
    fi
    log "already running in $DIR (pid $pid)"
    print_bootstrap "$port"
    return 0
  fi
  rm -f "$DIR/kafka.pid"
  cmd_install >/dev/null
  check_java
  java="$(java_bin)"

  # Same ports as last time in this directory unless told otherwise (restart on the same
  # address); fresh free ones the first time.
  port="${PORT:-$(saved_port PORT)}"
  cport="$(saved_port CONTROLLER_PORT)"
  if [[ -z "$port" || -z "$cport" || "$cport" == "$port" ]]; then
    local pair
    pair="$(free_ports)"
    [[ -n "$port" ]] || port="${pair%% *}"
    if [[ -z "$cport" || "$cport" == "$port" ]]; then
      cport="${pair##* }"
      [[ "$cport" != "$port" ]] || cport="${pair%% *}"
    fi
  fi
  port_free "$port" || die "port $port on 127.0.0.1 is in use"
  port_free "$cport" || die "controller port $cport on 127.0.0.1 is in use"
  local sport=""
  if secure; then
    [[ -r "$TLS_CERT" && -r "$TLS_KEY" && -r "$TLS_CA" ]] ||
      die "LEADFLOW_KAFKA_TLS_CERT, LEADFLOW_KAFKA_TLS_KEY and LEADFLOW_KAFKA_TLS_CA must be readable files"
    sport="$(saved_port SASL_SSL_PORT)"
    while [[ -z "$sport" || "$sport" == "$port" || "$sport" == "$cport" ]]; do
      sport="$(free_ports)"
      sport="${sport%% *}"
    done
    port_free "$sport" || die "SASL_SSL port $sport on 127.0.0.1 is in use"
  fi
  write_config "$port" "$cport" "$sport"

  if [[ ! -f "$DIR/data/meta.properties" ]]; then
    log "formatting KRaft storage in $DIR/data"
    local scram=() user
    for user in $SCRAM_USERS; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%:*},password=${user#*:}]")
    done
    "$java" -Xms64m -Xmx256m -Dlog4j2.configurationFile="$DIR/log4j2.properties" \
      -cp "$LIBS/*" kafka.tools.StorageTool format \
      -t "$(kafka_uuid)" -c "$DIR/server.properties" "${scram[@]}" >>"$DIR/format.log" 2>&1 ||
      { cat "$DIR/format.log" >&2; die "formatting $DIR/data failed"; }
  fi

  local log_size=0
  [[ -f "$DIR/server.log" ]] && log_size="$(stat -c %s "$DIR/server.log")"
  log "starting the broker on 127.0.0.1:$port (controller 127.0.0.1:$cport), log $DIR/server.log"
  # shellcheck disable=SC2086  # HEAP_OPTS is a list of JVM flags
  nohup "$java" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DIR/log4j2.properties" -Dkafka.logs.dir="$DIR" \
    -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" \
    >"$DIR/stdout.log" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$DIR/kafka.pid"

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the broker exited during startup; last lines of its logs:"
      tail -n 30 "$DIR/stdout.log" >&2 || true
      tail -c +"$((log_size + 1))" "$DIR/server.log" 2>/dev/null | grep -E 'ERROR|FATAL|Exception' |
        tail -n 20 >&2 || true
      rm -f "$DIR/kafka.pid"
      exit 1
    fi
    if tail -c +"$((log_size + 1))" "$DIR/server.log" 2>/dev/null |
      grep -q 'Kafka Server started' && api_versions_ok "$port"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      log "the broker was not ready after ${START_TIMEOUT}s; stopping it (see $DIR/server.log)"
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$DIR/kafka.pid"
      exit 1
    fi
    sleep 0.2
  done
  log "ready (pid $pid)"
  [[ -z "$sport" ]] || printf 'KAFKA_SASL_SSL_BOOTSTRAP=127.0.0.1:%s\n' "$sport"
  print_bootstrap "$port"
}

wait_gone() { # wait_gone PID SECONDS: 0 once PID has exited
  local pid="$1" deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

cmd_stop() {
  parse_opts "$@"
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$DIR/kafka.pid"
    log "not running in $DIR"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "still running after ${STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$DIR/kafka.pid"
  log "stopped (pid $pid)"
}

cmd_kill9() {
  parse_opts "$@"
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$DIR/kafka.pid"
    log "not running in $DIR"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
  rm -f "$DIR/kafka.pid"
  log "killed (pid $pid)"
}

cmd_status() {
  parse_opts "$@"
  local pid
  pid="$(running_pid)" || { log "not running in $DIR"; return 1; }
  log "running in $DIR (pid $pid)"
  print_bootstrap "$(saved_port PORT)"
}

main() {
  (($#)) || usage
  local cmd="$1"
  shift
  case "$cmd" in
    install) (($# == 0)) || usage; cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill9) cmd_kill9 "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage 0 ;;
    *) log "unknown command: $cmd"; usage ;;
  esac
}

main "$@"
