#!/usr/bin/env bash
# Install hyper from this checkout into a virtual environment (./.venv, or $HYPER_VENV).
#
#   ./install.sh           the hyper, qsub, qstat, qlog and qdel commands
#   ./install.sh --test    the same, editable, with what the tests and checks need, at the
#                          exact versions in .ci/constraints.txt (refreshed by .ci/lock)
#   ./install.sh --bench   the same as users get it (not editable), with what benchmarks need
#
# Needs python3 (3.10 or newer) with venv; everything else comes from the package index.
set -euo pipefail
cd "$(dirname "$0")"

venv=${HYPER_VENV:-.venv}
mode=${1:-}
case "$mode" in
  ""|--test|--bench) ;;
  *) echo "install.sh: unknown option $mode (use --test, --bench or nothing)" >&2; exit 2 ;;
esac

python3 - <<'PY' || { echo "install.sh: hyper needs Python 3.10 or newer" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || {
    echo "install.sh: python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  }
fi
pin=()
[ "$mode" = --test ] && pin=(--constraint .ci/constraints.txt)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pin[@]}" --upgrade pip setuptools wheel
case "$mode" in
  # not compiled here (16 s): the tests compile the 5,000 of the 11,500 modules they
  # import, as they import them
  --test) "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile "${pin[@]}" -e ".[test,tools]" ;;
  # measured as users run it: an editable install costs every Python start ~10 ms more
  --bench) "$venv/bin/python" -m pip install --quiet --disable-pip-version-check ".[bench]" ;;
  *) "$venv/bin/python" -m pip install --quiet --disable-pip-version-check . ;;
esac
echo "hyper installed in $(cd "$venv" && pwd); put $(cd "$venv" && pwd)/bin on your PATH" >&2
