#!/usr/bin/env bash
# The test command (README, .ci/run): `bash tests/run.sh [cargo test arguments]`.
#
# The tests drive the real binary against real peers: curl and openssl as clients, and headless
# Chromium for the stats page and the admin API's browser tests. Whatever of them is missing is
# installed with apt (as root; otherwise this says what to install and stops), then `cargo test`
# runs. A test that needs a peer fails with the reason when it is absent, it never passes silently.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "tests/run.sh: the tests need ${need[*]}: run this as root, or apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
exec cargo test "$@"
