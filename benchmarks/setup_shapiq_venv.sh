#!/usr/bin/env bash
# Create (or reuse) the virtual environment in which the sample-efficiency
# benchmark runs shapiq.
#
# shapiq is a contender, not a dependency: it lives in its own environment and
# daskval's never imports it. benchmarks/sample_efficiency.py runs
# benchmarks/shapiq_runner.py with this environment's python.
#
#   benchmarks/setup_shapiq_venv.sh           # -> <repo>/.venv-shapiq
#   DASKVAL_SHAPIQ_VENV=/tmp/sq benchmarks/setup_shapiq_venv.sh
#
# Environment:
#   DASKVAL_SHAPIQ_VENV    where the environment lives (default: <repo>/.venv-shapiq)
#   DASKVAL_SHAPIQ_PYTHON  the interpreter that creates it (default: python3)
#
# Idempotent: when the environment already holds shapiq $SHAPIQ_VERSION, it
# only checks that and exits. Prints the environment's python path last.
set -euo pipefail

SHAPIQ_VERSION="1.4.1"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DASKVAL_SHAPIQ_VENV:-$REPO_ROOT/.venv-shapiq}"
BASE_PYTHON="${DASKVAL_SHAPIQ_PYTHON:-python3}"
STAMP="$VENV/.daskval-shapiq-$SHAPIQ_VERSION"

check_env() {
    "$VENV/bin/python" - "$SHAPIQ_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version

import numpy  # noqa: F401  (importable, not only installed)
import shapiq  # noqa: F401

assert version("shapiq") == sys.argv[1], version("shapiq")
EOF
}

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]] && check_env; then
    echo "shapiq $SHAPIQ_VERSION environment ready" >&2
    echo "$VENV/bin/python"
    exit 0
fi

echo "creating the shapiq $SHAPIQ_VERSION environment in $VENV" >&2
"$BASE_PYTHON" -m venv "$VENV"
# keep the environment out of git even when it sits inside the repository
echo "*" > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "shapiq==$SHAPIQ_VERSION"
if ! check_env; then
    echo "error: $VENV does not hold an importable shapiq==$SHAPIQ_VERSION" >&2
    exit 1
fi
touch "$STAMP"
echo "shapiq $SHAPIQ_VERSION environment ready" >&2
echo "$VENV/bin/python"
