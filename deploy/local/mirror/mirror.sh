#!/usr/bin/env bash
# Kafka MirrorMaker 2 (dedicated mode) from the Maven Central jars, beside the local broker
# of ../kafka/kafka.sh: the two-region proof (tests/support/mirror.py) and the mirror lag
# benchmark (python -m bench.mirror) run it. See README.md beside this file.
#
#   mirror.sh install        fetch the jars into the cache (once), print the libs path
#   mirror.sh classpath      the java -cp value (installs first)
#
# Environment: LEADFLOW_KAFKA_HOME (cache, default ~/.cache/leadflow/kafka: the jars go to
# its mirror-libs/, keyed on a SHA-256 of pom.xml like the broker's libs/), JAVA_HOME.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
KAFKA_HOME="${LEADFLOW_KAFKA_HOME:-$HOME/.cache/leadflow/kafka}"
LIBS="$KAFKA_HOME/mirror-libs"
STAMP="$LIBS/.pom.sha256"

log() { printf 'mirror.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }
installed() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_sum)" ]]; }

cmd_install() {
  if installed; then
    printf '%s\n' "$LIBS"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"
  mkdir -p "$KAFKA_HOME"
  # One installer at a time (parallel test sessions); the others wait, then find it done.
  exec 9>"$KAFKA_HOME/.mirror-install.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if ! installed; then
    local tmp="$KAFKA_HOME/mirror-libs.tmp.$$"
    rm -rf "$tmp"
    log "fetching the MirrorMaker 2 jars from Maven Central into $LIBS"
    if ! mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mirror-install.log" 2>&1; then
      grep -E 'ERROR|FAIL' "$KAFKA_HOME/mirror-install.log" | head -n 20 >&2 || true
      rm -rf "$tmp"
      die "mvn dependency:copy-dependencies failed (full output: $KAFKA_HOME/mirror-install.log)"
    fi
    pom_sum >"$tmp/.pom.sha256"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
  fi
  exec 9>&-
  printf '%s\n' "$LIBS"
}

case "${1:-}" in
  install) cmd_install ;;
  classpath) printf '%s/*\n' "$(cmd_install)" ;;
  -h | --help | help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2 ;;
  *) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
