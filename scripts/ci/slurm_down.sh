#!/usr/bin/env bash
# Stop the one-node SLURM cluster that scripts/ci/slurm_up.sh started: slurmd, slurmctld, munged,
# found by their pid files (never by process name). Leaves packages, munge key and slurm.conf in
# place, so a later slurm_up.sh starts again in seconds. Idempotent.
#   bash scripts/ci/slurm_down.sh [--purge]   # --purge also removes job state and the state file
set -euo pipefail

STATE_DIR="${LEMMSE_SLURM_STATE_DIR:-/var/tmp/lemmse-slurm}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"

stop_pidfile() {  # name pidfile
    local pid
    if [ -s "$2" ] && pid="$(cat "$2")" && kill -0 "$pid" 2>/dev/null; then
        echo "slurm_down: stopping $1 (pid $pid)" >&2
        $SUDO kill -TERM "$pid"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && $SUDO kill -KILL "$pid"
    fi
    $SUDO rm -f "$2"
}

$SUDO rm -f "$STATE_DIR/cluster.env"
stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid

if [ "${1:-}" = "--purge" ]; then
    $SUDO rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* "$STATE_DIR"
fi
