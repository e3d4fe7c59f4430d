#!/usr/bin/env bash
# A real Redis for the agent's probe tests.
#
#   scripts/redis.sh install
#       Installs Debian's redis-server (apt-get, as root or through sudo).
#       Quiet and quick when redis-server is already on the PATH.
#
# The tests start their own redis-server on a free port in a temporary
# directory and stop it themselves; nothing here runs a server. The
# package's own service is not needed and is left as the package sets it up.
set -euo pipefail

log() { echo "redis.sh: $*" >&2; }

have_redis() {
    command -v redis-server >/dev/null 2>&1
}

install() {
    have_redis && return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "redis-server is missing and installing it needs root; run as root: apt-get install redis-server"
            exit 1
        fi
    fi
    log "installing redis-server with apt"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    if ! have_redis; then
        log "redis-server was installed but is not on the PATH"
        exit 1
    fi
}

case "${1:-}" in
    install) install ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
