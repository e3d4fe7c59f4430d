#!/usr/bin/env bash
# Installs what the dashboard's browser tests drive: Debian's Chromium and
# its WebDriver (/usr/bin/chromium, /usr/bin/chromedriver). A second call
# only reports the version.
#
#   scripts/chromium.sh
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    /usr/bin/chromium --version 2>/dev/null || echo "chromium installed"
    exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
/usr/bin/chromedriver --version
