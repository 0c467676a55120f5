#!/usr/bin/env bash
# Start daskval workers on this machine: one single-threaded worker process
# per core (scikit-learn fits hold the GIL much of the time), BLAS pinned to
# one thread each. Workers need daskval (and the libraries of your models)
# importable, with the scheduler's dask and distributed versions.
#
#   deploy/worker.sh tcp://scheduler-host:8786
#   DASKVAL_SCHEDULER_FILE=/shared/scheduler.json deploy/worker.sh
#
# Environment (all optional):
#   DASKVAL_NWORKERS             worker processes (default: the number of cores)
#   DASKVAL_MEMORY_LIMIT         per worker process (default: auto, an even share)
#   DASKVAL_WORKER_HOST          address to listen on (e.g. 127.0.0.1)
#   DASKVAL_LIFETIME             retire gracefully after this long (e.g. 55m), with
#   DASKVAL_LIFETIME_STAGGER     this random spread (e.g. 4m): for machines that go away
#   DASKVAL_SCHEDULER_FILE       read the scheduler's address from this file
#   DASKVAL_TLS_CA, DASKVAL_TLS_CERT, DASKVAL_TLS_KEY
#                                all three: connect with TLS (tls:// address)
# Further arguments go to `dask worker` unchanged.
set -euo pipefail

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export VECLIB_MAXIMUM_THREADS=1 NUMEXPR_NUM_THREADS=1

target=()
if [[ -n "${DASKVAL_SCHEDULER_FILE:-}" ]]; then
    target=(--scheduler-file "$DASKVAL_SCHEDULER_FILE")
elif [[ $# -gt 0 && "$1" != -* ]]; then
    target=("$1")
    shift
else
    echo "usage: $0 <scheduler address> [dask worker options]" >&2
    echo "   or: DASKVAL_SCHEDULER_FILE=<file> $0 [dask worker options]" >&2
    exit 2
fi

args=(--nthreads 1 --nworkers "${DASKVAL_NWORKERS:-$(nproc)}"
      --memory-limit "${DASKVAL_MEMORY_LIMIT:-auto}")
[[ -n "${DASKVAL_WORKER_HOST:-}" ]] && args+=(--host "$DASKVAL_WORKER_HOST")
if [[ -n "${DASKVAL_LIFETIME:-}" ]]; then
    args+=(--lifetime "$DASKVAL_LIFETIME"
           --lifetime-stagger "${DASKVAL_LIFETIME_STAGGER:-0s}")
fi
if [[ -n "${DASKVAL_TLS_CA:-}${DASKVAL_TLS_CERT:-}${DASKVAL_TLS_KEY:-}" ]]; then
    : "${DASKVAL_TLS_CA:?set DASKVAL_TLS_CA, DASKVAL_TLS_CERT and DASKVAL_TLS_KEY together}"
    : "${DASKVAL_TLS_CERT:?set DASKVAL_TLS_CA, DASKVAL_TLS_CERT and DASKVAL_TLS_KEY together}"
    : "${DASKVAL_TLS_KEY:?set DASKVAL_TLS_CA, DASKVAL_TLS_CERT and DASKVAL_TLS_KEY together}"
    args+=(--tls-ca-file "$DASKVAL_TLS_CA" --tls-cert "$DASKVAL_TLS_CERT"
           --tls-key "$DASKVAL_TLS_KEY")
fi
exec dask worker "${target[@]}" "${args[@]}" "$@"
