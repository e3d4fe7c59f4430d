#!/usr/bin/env bash
# A real SMTP server for Panorama's mail tests and demos.
#
#   scripts/smtp.sh install
#       Makes Debian's python3-aiosmtpd importable by /usr/bin/python3
#       (apt-get, as root or through sudo). Quiet and quick when it already is.
#
#   scripts/smtp.sh run --port P --dir D [--host H]
#                       [--starttls CERT KEY | --tls CERT KEY]
#                       [--auth USER:PASS] [--reject ADDR]... [--defer ADDR]...
#       Runs a server in the foreground on H:P (default 127.0.0.1) that stores
#       each accepted message as D/<n>.eml. --starttls offers and requires
#       STARTTLS, --tls speaks TLS from the first byte (like port 465),
#       --auth requires AUTH PLAIN/LOGIN with that user and password,
#       --reject answers 550 to RCPT TO:<ADDR>, --defer answers 451.
#       The server is scripts/smtp_sink.py; see there for what it records.
#
# /usr/bin/python3 is used on purpose: apt installs aiosmtpd for the system
# interpreter, which a virtualenv or pyenv first on PATH would not see.
set -euo pipefail

PY=/usr/bin/python3
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { echo "smtp.sh: $*" >&2; }

have_aiosmtpd() {
    [[ -x "$PY" ]] && "$PY" -c 'import aiosmtpd' >/dev/null 2>&1
}

install() {
    have_aiosmtpd && return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            log "python3-aiosmtpd is missing and installing it needs root; run as root: apt-get install python3-aiosmtpd"
            exit 1
        fi
    fi
    log "installing python3-aiosmtpd with apt"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd >/dev/null
    if ! have_aiosmtpd; then
        log "python3-aiosmtpd was installed but '$PY -c \"import aiosmtpd\"' still fails"
        exit 1
    fi
}

run() {
    if ! have_aiosmtpd; then
        log "aiosmtpd is not installed; run 'scripts/smtp.sh install' first"
        exit 1
    fi
    # exec, so that whoever started us can stop the server by our pid.
    exec "$PY" "$HERE/smtp_sink.py" "$@"
}

case "${1:-}" in
    install) install ;;
    run)
        shift
        run "$@"
        ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
