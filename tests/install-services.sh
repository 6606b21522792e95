#!/usr/bin/env bash
# Install what the tests need from Debian, where it is missing: the servers the tests start
# for themselves — Debian's PostgreSQL (tests/services.py runs its own cluster on a free
# loopback port; moto's S3 server comes with the dev extra) and Debian's Chromium with its
# driver (the web UI's tests drive the system browser through Playwright, which never
# downloads one of its own) — and what the README's commands use (Fashion-MNIST, curl,
# openssl). Needs root or sudo; a no-op when everything is there.
set -euo pipefail
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# the README's commands (tests/test_readme.py) read Fashion-MNIST and call curl and openssl
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
