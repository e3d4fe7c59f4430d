#!/usr/bin/env bash
# Installs what the dashboard's browser tests drive: Debian's Chromium and
# its WebDriver (/usr/bin/chromium, /usr/bin/chromedriver), and a Chinese
# font (WenQuanYi Zen Hei) so the Simplified Chinese pages' screenshots show
# text rather than empty boxes. A second call only reports the version.
#
#   scripts/chromium.sh
set -euo pipefail

has_zh_font() {
    command -v fc-list >/dev/null 2>&1 && [[ -n "$(fc-list :lang=zh 2>/dev/null)" ]]
}
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && has_zh_font; then
    /usr/bin/chromium --version 2>/dev/null || echo "chromium installed"
    exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    chromium chromium-driver fonts-wqy-zenhei >/dev/null
/usr/bin/chromium --version
/usr/bin/chromedriver --version
