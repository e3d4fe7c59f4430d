#!/usr/bin/env bash
# Start (or reuse) a loopback-only Elasticsearch for Panorama's tests and demos.
#
# The integration-test distribution is the smallest Elasticsearch there is: no
# bundled JDK, so the machine's JDK 17 runs it. Security is switched off
# because the node binds 127.0.0.1 only. Maven fetches it from its default repository.
#
#   scripts/elasticsearch.sh [start]   start or reuse; prints the URL
#   scripts/elasticsearch.sh stop      stop the instance this script started
#   scripts/elasticsearch.sh status    exit 0 when the cluster answers
#
# Environment:
#   PANORAMA_ES_VERSION  server version (default 8.19.7; the client crate is 8.x)
#   PANORAMA_ES_PORT     HTTP port on 127.0.0.1 (default 9200)
#   PANORAMA_CACHE       cache directory (default ~/.cache/panorama; /var/cache/panorama as root)
#   PANORAMA_ES_HEAP     JVM heap (default 512m)
#   PANORAMA_ES_SETTINGS extra elasticsearch.yml lines, for tests that need an
#                        unusual node (a tiny write queue, to provoke 429s)
set -euo pipefail

ES_VERSION="${PANORAMA_ES_VERSION:-8.19.7}"
PORT="${PANORAMA_ES_PORT:-9200}"
# As root the server runs as a system user that cannot enter /root.
if [[ "$(id -u)" == 0 ]]; then DEFAULT_CACHE=/var/cache/panorama; else DEFAULT_CACHE="$HOME/.cache/panorama"; fi
CACHE="${PANORAMA_CACHE:-$DEFAULT_CACHE}"
HEAP="${PANORAMA_ES_HEAP:-512m}"
DIST="$CACHE/elasticsearch-$ES_VERSION"
INSTANCE="$CACHE/es-instance-$PORT"
URL="http://127.0.0.1:$PORT"
ES_USER=panorama-es

log() { echo "elasticsearch.sh: $*" >&2; }

healthy() {
    curl -fsS "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

ensure_tools() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    command -v unzip >/dev/null 2>&1 || missing+=(unzip)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

fetch() {
    [[ -x "$DIST/bin/elasticsearch" ]] && return
    mkdir -p "$CACHE"
    local repo="$CACHE/m2"
    local artifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"
    log "fetching $artifact with maven"
    mvn -q -B dependency:get -Dmaven.repo.local="$repo" -Dartifact="$artifact" -Dtransitive=false >&2
    local zip="$repo/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
    local tmp
    tmp="$(mktemp -d "$CACHE/unpack.XXXXXX")"
    unzip -q "$zip" -d "$tmp"
    mv "$tmp/elasticsearch-$ES_VERSION" "$DIST"
    rmdir "$tmp"
}

# Elasticsearch refuses to run as root, and CI runs as root.
run_as() {
    if [[ "$(id -u)" == 0 ]]; then
        id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
        chown -R "$ES_USER" "$INSTANCE"
        chmod -R a+rX "$DIST"
        runuser -u "$ES_USER" -- "$@"
    else
        "$@"
    fi
}

start() {
    if healthy; then
        echo "$URL"
        return
    fi
    ensure_tools
    fetch
    mkdir -p "$INSTANCE/config" "$INSTANCE/data" "$INSTANCE/logs"
    # A config directory per instance, so several ports can run side by side.
    cp -r "$DIST/config/." "$INSTANCE/config/"
    cat >"$INSTANCE/config/elasticsearch.yml" <<YML
cluster.name: panorama-test-$PORT
node.name: node-$PORT
network.host: 127.0.0.1
http.port: $PORT
transport.port: $((PORT + 100))
discovery.type: single-node
path.data: $INSTANCE/data
path.logs: $INSTANCE/logs
# The disk watermarks would turn indices read-only on a nearly full dev disk.
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: true
# Loopback only, for tests and demos: no TLS, no users.
xpack.security.enabled: false
${PANORAMA_ES_SETTINGS:-}
YML
    cat >"$INSTANCE/config/jvm.options.d/heap.options" <<JVM
-Xms$HEAP
-Xmx$HEAP
JVM
    rm -f "$INSTANCE/es.pid"
    log "starting Elasticsearch $ES_VERSION on $URL"
    run_as env ES_PATH_CONF="$INSTANCE/config" ES_JAVA_HOME="${ES_JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}" \
        "$DIST/bin/elasticsearch" -d -p "$INSTANCE/es.pid" >"$INSTANCE/start.log" 2>&1 || {
        log "start failed; see $INSTANCE/start.log and $INSTANCE/logs"
        tail -n 50 "$INSTANCE/start.log" >&2
        exit 1
    }
    for _ in $(seq 1 180); do
        if healthy; then
            log "healthy"
            echo "$URL"
            return
        fi
        sleep 1
    done
    log "not healthy after 180 s; last log lines:"
    tail -n 50 "$INSTANCE/logs/"*.log >&2 || true
    exit 1
}

stop() {
    if [[ -f "$INSTANCE/es.pid" ]]; then
        local pid
        pid="$(cat "$INSTANCE/es.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$INSTANCE/es.pid"
    fi
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) healthy ;;
*)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
