#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs and
# starts what the tests need, checks formatting and lints, then runs every
# test, including those against a live Elasticsearch.
#
#   scripts/test.sh
#
# Environment: PANORAMA_ES_URL to use an existing cluster instead of the one
# scripts/elasticsearch.sh starts; PANORAMA_TEST_JOBS for cargo's -j.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install a Rust toolchain (1.85 or newer) first" >&2
    exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "test.sh: rustfmt and clippy are required (rustup component add rustfmt clippy)" >&2
    exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
    # The bundled SQLite is compiled from C.
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
fi

if ! dpkg -s libfaketime >/dev/null 2>&1; then
    # The fault drill shifts its processes' clock across midnight with it.
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets ${PANORAMA_TEST_JOBS:+-j "$PANORAMA_TEST_JOBS"} -- -D warnings

step "elasticsearch"
if [[ -z "${PANORAMA_ES_URL:-}" ]]; then
    PANORAMA_ES_URL="$(scripts/elasticsearch.sh start)"
    export PANORAMA_ES_URL
fi
echo "using $PANORAMA_ES_URL"

step "smtp"
# Mail tests start their own servers on free ports; this only installs one.
scripts/smtp.sh install

step "redis and mariadb"
# The agent's probe tests start their own servers on free ports in temporary
# directories; this only installs them.
scripts/redis.sh install
scripts/mariadb.sh install

step "chromium"
scripts/chromium.sh

step "tests"
# --no-fail-fast: one failing crate must not hide the others' results.
cargo test --workspace --no-fail-fast ${PANORAMA_TEST_JOBS:+-j "$PANORAMA_TEST_JOBS"} -- --include-ignored
