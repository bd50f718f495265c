#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian, for the operations console's
# browser test (tests/ops/test_console_browser.py).
#   deploy/local/browser.sh install|status
# Selenium (a dev dependency) drives /usr/bin/chromedriver; it never downloads a
# browser or a driver (SE_OFFLINE=true in the test).
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

installed() { [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; }

case "${1:-}" in
    install)
        installed || apt_install chromium chromium-driver
        installed || die "chromium installed but $CHROMIUM or $CHROMEDRIVER is missing"
        ;;
    status)
        if installed; then
            info "$("$CHROMIUM" --version 2>/dev/null), $("$CHROMEDRIVER" --version 2>/dev/null | head -1)"
        else
            info "chromium not installed (deploy/local/browser.sh install)"
            exit 3
        fi
        ;;
    *)
        echo "usage: $0 install|status" >&2
        exit 2
        ;;
esac
