#!/usr/bin/env bash
# The Debian packages some tests use for real, installed before `make test` when this
# user can (root, or sudo without a password) and apt-get exists. Otherwise the tests
# that need them are skipped, each naming the command to run; nothing fails for a
# missing system package. VISIONOPS_NO_APT=1 never installs.
# - postgresql: tests/servers.py starts a real PostgreSQL (server stack, backup tests)
# - docker-compose: tests/app/test_compose.py validates docker-compose.yml (no daemon needed)
# - chromium: tests/serving/test_web_ui.py drives the service's web page (Playwright, no download)
# - docker.io, debootstrap: tests/pipelines/test_docker_*.py start dockerd and build every image
#   from a local Debian base (tests/docker_env.py)
set -uo pipefail

missing=()
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
    missing+=(docker-compose)
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    missing+=(chromium)
fi
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get install -y --no-install-recommends ${missing[*]}"
skip() {
    echo "Not installed: ${missing[*]} ($1); the tests that need them are skipped." >&2
    echo "To run them too: sudo apt-get update && sudo $command" >&2
    exit 0
}
[ "${VISIONOPS_NO_APT:-}" = 1 ] && skip "VISIONOPS_NO_APT=1"
command -v apt-get >/dev/null || skip "no apt-get here"
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    skip "installing them needs root"
fi
echo "Installing ${missing[*]} for the tests (apt-get)..." >&2
"${sudo[@]}" apt-get update -qq || skip "apt-get update failed"
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" || skip "apt-get install failed"
