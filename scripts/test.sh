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

# PYTHONDONTWRITEBYTECODE (set on some CI images) would make every `opensti` subprocess
# the tests start compile the whole package again: compile it once here.
.venv/bin/python -m compileall -q src

# Spread over every core; worksteal hands a worker that ran out of tests the queue of one
# still stuck behind slow ones (servers, browsers), so both finish near the same time.
PYTEST=(.venv/bin/python -m pytest -n auto --dist worksteal)

run_pytest() {
  # pytest's status; "no tests collected" (5) is an error: this suite always has some.
  local code=0
  "${PYTEST[@]}" "$@" || code=$?
  if [ "$code" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    code=1
  fi
  return "$code"
}

if [ "$#" -gt 0 ]; then
  echo "==> pytest $*"
  # A chosen subset: SQLite only, no coverage floor.
  status=0
  run_pytest "$@" || status=$?
  exit "$status"
fi

# One throwaway PostgreSQL cluster for the whole run: the PostgreSQL-only tests of the
# SQLite half use it (instead of a cluster per worker), then the second half runs on it.
pgdir=$(mktemp -d /tmp/opensti-pg-XXXXXX)
trap 'scripts/postgres-cluster.sh destroy "$pgdir" >/dev/null 2>&1 || true' EXIT
pg_url=$(scripts/postgres-cluster.sh start "$pgdir")

# Line coverage of src/opensti in the pytest processes, added up over both halves; the
# floor (fail_under in pyproject.toml) is checked once, on the sum.
COVERAGE=(--cov --cov-report= --cov-fail-under=0)
rm -f .coverage .coverage.*

echo "==> pytest (SQLite)"
status=0
run_pytest "${COVERAGE[@]}" --postgres-url "$pg_url" || status=$?

# Only the tests marked db_dialect: what runs SQL that differs between the two databases
# (the rule is in tests/README.md). Everything else goes through the same SQL already
# checked here, and ran on SQLite above.
echo "==> pytest on PostgreSQL (tests marked db_dialect)"
pg_status=0
run_pytest "${COVERAGE[@]}" --cov-append --db-url "$pg_url" -m db_dialect tests || pg_status=$?

echo "==> coverage of src/opensti (both halves; floor: fail_under in pyproject.toml)"
total=$(.venv/bin/coverage report --format=total --fail-under=0)
floor=$(.venv/bin/python -c 'import tomllib
print(tomllib.load(open("pyproject.toml", "rb"))["tool"]["coverage"]["report"]["fail_under"])')
echo "line coverage: ${total}% (floor ${floor}%; details: .venv/bin/coverage report -m)"
cov_status=0
.venv/bin/coverage report --format=total >/dev/null 2>&1 || cov_status=$?
if [ "$cov_status" -ne 0 ]; then
  echo "error: line coverage ${total}% is below the floor of ${floor}%" >&2
fi

for code in "$status" "$pg_status" "$cov_status"; do
  if [ "$code" -ne 0 ]; then
    exit "$code"
  fi
done
