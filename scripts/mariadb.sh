#!/usr/bin/env bash
# A real MySQL-compatible server (MariaDB) for the agent's probe tests.
#
#   scripts/mariadb.sh install
#       Installs Debian's mariadb-server (apt-get, as root or through sudo).
#       Quiet and quick when mariadbd and mariadb-install-db are already there.
#
# The tests create their own data directory in a temporary directory
# (mariadb-install-db), start mariadbd on a free port with its own socket,
# and stop it themselves; the package's own service is not needed. Debian
# installs mariadbd in /usr/sbin, which a normal user's PATH may lack, so
# the tests look there too.
set -euo pipefail

log() { echo "mariadb.sh: $*" >&2; }

have_mariadb() {
    { command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; } &&
        { command -v mariadb-install-db >/dev/null 2>&1 || [[ -x /usr/bin/mariadb-install-db ]]; }
}

install() {
    have_mariadb && return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "mariadb-server is missing and installing it needs root; run as root: apt-get install mariadb-server"
            exit 1
        fi
    fi
    log "installing mariadb-server with apt"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
    if ! have_mariadb; then
        log "mariadb-server was installed but mariadbd or mariadb-install-db is missing"
        exit 1
    fi
}

case "${1:-}" in
    install) install ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
