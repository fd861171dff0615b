#!/usr/bin/env bash
# Install everything the test suite needs, from this repository's own files, then run
# the linters and the whole suite. Safe to run again: installed parts are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real: secsipidx (the third-party STIR/SHAKEN peer),
# sip-tester (SIPp, a SIP load generator and UAC), openssl (the benchmark baseline),
# chromium + chromium-driver (the web UI's browser tests, driven by Playwright),
# kamailio + its secsipid module (a SIP proxy signing and verifying with opensti),
# postgresql (the multi-node database; the tests run their own throwaway cluster).
DEBIAN_PACKAGES=(secsipidx sip-tester openssl chromium chromium-driver kamailio
  kamailio-secsipid-modules postgresql)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    # Packages with daemons (kamailio) must not start them: the tests run their own.
    policy_rc=/usr/sbin/policy-rc.d
    added_policy=no
    if [ ! -e "$policy_rc" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy_rc"
      chmod +x "$policy_rc"
      added_policy=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$added_policy" = yes ]; then rm -f "$policy_rc"; fi
  else
    echo "warning: not root; missing Debian packages ${missing[*]}: their tests will be skipped" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "==> pip install -e .[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# A third-party Peeringhub client in its own environment, so its pins never meet ours.
echo "==> .venv-peeringhub (shaken-cert-manager)"
if [ ! -x .venv-peeringhub/bin/python ]; then
  "$PYTHON" -m venv .venv-peeringhub
fi
.venv-peeringhub/bin/python -m pip install -q --disable-pip-version-check \
  -r tests/interop/peeringhub-requirements.txt

echo "==> ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "==> mypy"
.venv/bin/mypy

echo "==> pytest (SQLite)"
set +e
# Both cores: most tests wait on sockets and child processes, so two workers halve
# the wall time.
.venv/bin/python -m pytest -n auto "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  # This suite always has tests: collecting none means something is broken.
  echo "error: pytest collected no tests" >&2
  exit 1
fi
if [ "$#" -gt 0 ]; then
  exit "$status"  # a chosen subset: no second database run
fi

echo "==> pytest on PostgreSQL (every test that uses the database)"
pgdir=$(mktemp -d /tmp/opensti-pg-XXXXXX)
trap 'scripts/postgres-cluster.sh destroy "$pgdir" >/dev/null 2>&1 || true' EXIT
pg_url=$(scripts/postgres-cluster.sh start "$pgdir")
set +e
.venv/bin/python -m pytest -n auto --db-url "$pg_url" \
  tests/store tests/calls tests/api tests/repository tests/lifecycle tests/web tests/cli
pg_status=$?
set -e
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exit "$pg_status"
