#!/usr/bin/env bash
# Create (or reuse) a virtual environment with daskval and the OLDEST
# dask/distributed that pyproject.toml declares (dask[distributed]>=X), for
# tests/test_dashboard_oldest.py: the /daskval page uses distributed internals,
# so it is tested against the newest release (the main environment) and this one.
#
#   .ci/oldest_distributed_venv.sh        # -> <repo>/.venv-oldest
#   DASKVAL_OLDEST_VENV=/tmp/ov .ci/oldest_distributed_venv.sh
#
# Environment:
#   DASKVAL_OLDEST_VENV    where the environment lives (default: <repo>/.venv-oldest)
#   PYTHON                 the interpreter that creates it (default: python3)
#
# daskval is installed editable, so the environment follows the working tree;
# when it already holds the declared version the script only checks that.
# Prints the environment's python path as its last line.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DASKVAL_OLDEST_VENV:-$REPO_ROOT/.venv-oldest}"
BASE_PYTHON="${PYTHON:-python3}"
OLDEST="$(sed -n 's/^ *"dask\[distributed\]>=\([0-9.]*\)".*/\1/p' "$REPO_ROOT/pyproject.toml")"
[[ -n "$OLDEST" ]] || { echo "error: no dask[distributed]>= pin in pyproject.toml" >&2; exit 1; }

check_env() {
    "$VENV/bin/python" - "$OLDEST" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version

import daskval, distributed, playwright  # noqa: E401,F401  (importable)

assert version("distributed") == sys.argv[1], version("distributed")
assert version("dask") == sys.argv[1], version("dask")
PY
}

if [[ -x "$VENV/bin/python" ]] && check_env; then
    echo "distributed $OLDEST environment ready" >&2
    echo "$VENV/bin/python"
    exit 0
fi

echo "creating the distributed $OLDEST environment in $VENV" >&2
rm -rf "$VENV"
"$BASE_PYTHON" -m venv "$VENV"
echo "*" > "$VENV/.gitignore"  # never committed, never linted
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
    || echo "warning: could not upgrade pip" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$REPO_ROOT[test]" "dask[distributed]==$OLDEST" "distributed==$OLDEST"
if ! check_env; then
    echo "error: $VENV does not hold dask/distributed $OLDEST with daskval" >&2
    exit 1
fi
echo "distributed $OLDEST environment ready" >&2
echo "$VENV/bin/python"
