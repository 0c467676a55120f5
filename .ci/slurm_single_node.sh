#!/usr/bin/env bash
# A single-node SLURM on this machine (Debian's slurm-wlm and munge), for the
# SLURM tier of the tests (tests/test_slurm.py starts and stops it).
#
#   bash .ci/slurm_single_node.sh install   # apt-get install slurm-wlm munge
#   bash .ci/slurm_single_node.sh start     # config, munged, slurmctld, slurmd
#   bash .ci/slurm_single_node.sh stop      # stop what start started
#
# Needs root (sudo is used when available). `start` writes /etc/slurm/slurm.conf
# (one node: this host at 127.0.0.1, partition "debug", no accounting) unless
# a SLURM is already answering, and waits until the node is idle; it prints
# "started" or "already running". Recipe: ../shared/notes/dask.md, section 5.
set -euo pipefail

SUDO=()
[[ "$(id -u)" -ne 0 ]] && SUDO=(sudo -n)
STATE=/var/spool/daskval-slurm
CONF=/etc/slurm/slurm.conf
fail() { printf 'slurm_single_node.sh: %s\n' "$*" >&2; exit 1; }

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        echo "slurm-wlm and munge are installed"
        return
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
}

node_state() { sinfo -h -o '%T' 2>/dev/null | head -n1 || true; }

write_config() {
    local host node
    host="$(hostname -s)"
    # "NodeName=<host> CPUs=... RealMemory=..." as slurmd sees this machine
    node="$(slurmd -C | head -n1)"
    [[ "$node" == NodeName=* ]] || fail "slurmd -C gave no node line: $node"
    "${SUDO[@]}" mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" /var/log/slurm
    "${SUDO[@]}" tee "$CONF" >/dev/null <<EOF
# written by daskval's .ci/slurm_single_node.sh: one node, no accounting
ClusterName=daskval
SlurmctldHost=${host}(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
${node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    command -v slurmctld >/dev/null || fail "slurm-wlm is not installed (run: $0 install)"
    if [[ "$(node_state)" == idle* || "$(node_state)" == mix* ]]; then
        echo "already running"
        return
    fi
    write_config
    if ! pgrep -x munged >/dev/null; then
        "${SUDO[@]}" mkdir -p /run/munge /var/log/munge /var/lib/munge
        "${SUDO[@]}" chown munge:munge /run/munge /var/log/munge /var/lib/munge
        [[ -f /etc/munge/munge.key ]] || "${SUDO[@]}" mungekey --create
        "${SUDO[@]}" runuser -u munge -- /usr/sbin/munged
        touch "/tmp/daskval-slurm-started-munged"
    fi
    "${SUDO[@]}" /usr/sbin/slurmctld
    "${SUDO[@]}" /usr/sbin/slurmd
    local deadline=$((SECONDS + 60))
    until [[ "$(node_state)" == idle* ]]; do
        if ((SECONDS > deadline)); then
            sinfo || true
            tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log || true
            fail "the node did not become idle within 60 s"
        fi
        # a node left down by an earlier run comes back
        "${SUDO[@]}" scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
        sleep 1
    done
    echo "started"
}

stop_pidfile() {
    local file="$1"
    if [[ -f "$file" ]]; then
        "${SUDO[@]}" kill "$(cat "$file")" 2>/dev/null || true
    fi
}

stop() {
    scancel --user "$(id -un)" 2>/dev/null || true
    stop_pidfile "$STATE/slurmd.pid"
    stop_pidfile "$STATE/slurmctld.pid"
    if [[ -f /tmp/daskval-slurm-started-munged ]]; then
        "${SUDO[@]}" kill "$(pgrep -x -u munge munged)" 2>/dev/null || true
        rm -f /tmp/daskval-slurm-started-munged
    fi
    echo "stopped"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) fail "usage: $0 install|start|stop" ;;
esac
