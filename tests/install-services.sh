#!/usr/bin/env bash
# Install the servers the tests start for themselves, where they are missing: Debian's
# PostgreSQL (tests/services.py runs its own cluster on a free loopback port; moto's S3 server
# comes with the dev extra) and Debian's Chromium with its driver (the web UI's tests drive the
# system browser through Playwright, which never downloads one of its own). Needs root or sudo;
# a no-op when everything is there.
set -euo pipefail
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
