#!/usr/bin/env bash
# Create (or reuse) the virtual environment in which the benchmarks run pyDVL.
#
# pyDVL 0.10.0 pins numpy<2, so it lives in its own environment; daskval's
# environment never imports it. The harness runs benchmarks/pydvl_runner.py
# with this environment's python.
#
#   benchmarks/setup_pydvl_venv.sh            # -> /work/main/.venv-pydvl (repo/.venv-pydvl)
#   DASKVAL_PYDVL_VENV=/tmp/pv benchmarks/setup_pydvl_venv.sh
#
# Environment:
#   DASKVAL_PYDVL_VENV    where the environment lives (default: <repo>/.venv-pydvl)
#   DASKVAL_PYDVL_PYTHON  the interpreter that creates it (default: python3)
#
# Idempotent: when the environment already holds pydvl 0.10.0 with numpy<2 and
# scikit-learn, it only checks that and exits (well under a second or two).
# Prints the environment's python path as its last line.
set -euo pipefail

PYDVL_VERSION="0.10.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DASKVAL_PYDVL_VENV:-$REPO_ROOT/.venv-pydvl}"
BASE_PYTHON="${DASKVAL_PYDVL_PYTHON:-python3}"
STAMP="$VENV/.daskval-pydvl-$PYDVL_VERSION"

check_env() {
    "$VENV/bin/python" - "$PYDVL_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version

import numpy, sklearn  # noqa: E401,F401  (importable, not only installed)

assert version("pydvl") == sys.argv[1], version("pydvl")
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
EOF
}

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]] && check_env; then
    echo "pyDVL $PYDVL_VERSION environment ready" >&2
    echo "$VENV/bin/python"
    exit 0
fi

echo "creating the pyDVL $PYDVL_VERSION environment in $VENV" >&2
"$BASE_PYTHON" -m venv "$VENV"
# keep the environment out of git even when it sits inside the repository
echo "*" > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "pydvl==$PYDVL_VERSION" "numpy<2" "scikit-learn"
if ! check_env; then
    echo "error: $VENV does not hold pydvl==$PYDVL_VERSION with numpy<2" >&2
    exit 1
fi
touch "$STAMP"
echo "pyDVL $PYDVL_VERSION environment ready" >&2
echo "$VENV/bin/python"
