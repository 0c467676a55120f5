#!/usr/bin/env bash
# Start a Dask scheduler for daskval runs (a long-lived cluster on your own
# machines). The scheduler does not need daskval, except for the /daskval
# page on its dashboard; dask and distributed must match the workers' and the
# clients' versions.
#
#   DASKVAL_SCHEDULER_PORT=8786 DASKVAL_DASHBOARD_ADDRESS=:8787 deploy/scheduler.sh
#
# Environment (all optional):
#   DASKVAL_SCHEDULER_HOST       address to listen on (default: all interfaces)
#   DASKVAL_SCHEDULER_PORT       comm port (default 8786)
#   DASKVAL_DASHBOARD_ADDRESS    dashboard host:port (default :8787)
#   DASKVAL_SCHEDULER_FILE       write the address there for workers/clients
#   DASKVAL_TLS_CA, DASKVAL_TLS_CERT, DASKVAL_TLS_KEY
#                                all three: listen on tls:// with these PEM files
# Further arguments go to `dask scheduler` unchanged.
set -euo pipefail

args=(--port "${DASKVAL_SCHEDULER_PORT:-8786}"
      --dashboard-address "${DASKVAL_DASHBOARD_ADDRESS:-:8787}")
[[ -n "${DASKVAL_SCHEDULER_HOST:-}" ]] && args+=(--host "$DASKVAL_SCHEDULER_HOST")
[[ -n "${DASKVAL_SCHEDULER_FILE:-}" ]] && args+=(--scheduler-file "$DASKVAL_SCHEDULER_FILE")
if [[ -n "${DASKVAL_TLS_CA:-}${DASKVAL_TLS_CERT:-}${DASKVAL_TLS_KEY:-}" ]]; then
    : "${DASKVAL_TLS_CA:?set DASKVAL_TLS_CA, DASKVAL_TLS_CERT and DASKVAL_TLS_KEY together}"
    : "${DASKVAL_TLS_CERT:?set DASKVAL_TLS_CA, DASKVAL_TLS_CERT and DASKVAL_TLS_KEY together}"
    : "${DASKVAL_TLS_KEY:?set DASKVAL_TLS_CA, DASKVAL_TLS_CERT and DASKVAL_TLS_KEY together}"
    args+=(--protocol tls --tls-ca-file "$DASKVAL_TLS_CA"
           --tls-cert "$DASKVAL_TLS_CERT" --tls-key "$DASKVAL_TLS_KEY")
fi
exec dask scheduler "${args[@]}" "$@"
