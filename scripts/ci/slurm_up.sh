#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for CI and for trying the slurm/ profile locally.
#
#   bash scripts/ci/slurm_up.sh        # install (if needed), configure, start, wait until idle
#   bash scripts/ci/slurm_down.sh      # stop the daemons again
#
# Made for a Debian/Ubuntu container without systemd, run as root (or with passwordless sudo):
#   * installs Debian's slurm-wlm and munge with apt-get, unless slurmctld/slurmd/munged exist;
#   * creates a munge key if there is none and starts munged;
#   * writes /etc/slurm/slurm.conf for ONE node on loopback (the node is `hostname -s`,
#     NodeAddr=127.0.0.1, CPUs from nproc, RealMemory 80 % of MemTotal), one Default
#     partition, select/cons_tres, proctrack/linuxproc, task/none, no accounting, no GPUs,
#     MinJobAge=600 so `squeue` still reports finished jobs for ten minutes;
#   * starts slurmctld and slurmd directly (no systemd) and waits until `sinfo` shows the node idle;
#   * writes $LEMMSE_SLURM_STATE_DIR/cluster.env (default /var/tmp/lemmse-slurm), which tells the
#     tests that this cluster is up and which partition to use.
#
# Idempotent: rerunning while the cluster is up only checks it. A slurm.conf not written by this
# script is never overwritten (the script stops instead), so it is safe on a real machine.
# Environment: LEMMSE_SLURM_PARTITION (default "ci"), LEMMSE_SLURM_STATE_DIR, LEMMSE_SLURM_WAIT_S
# (seconds to wait for the node, default 90).
set -euo pipefail

PARTITION="${LEMMSE_SLURM_PARTITION:-ci}"
STATE_DIR="${LEMMSE_SLURM_STATE_DIR:-/var/tmp/lemmse-slurm}"
WAIT_S="${LEMMSE_SLURM_WAIT_S:-90}"
CONF=/etc/slurm/slurm.conf
MARKER="# written by lemmse scripts/ci/slurm_up.sh"
NODE="$(hostname -s)"

log() { echo "slurm_up: $*" >&2; }
die() { log "error: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null \
        || die "needs root (or passwordless sudo) to install and start the SLURM daemons"
    SUDO="sudo -n"
fi

node_state() { sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n1 | tr -d '*~#!%$@^-' || true; }

write_state_file() {
    $SUDO mkdir -p "$STATE_DIR"
    printf 'LEMMSE_SLURM_UP=1\nLEMMSE_SLURM_PARTITION=%s\nLEMMSE_SLURM_NODE=%s\nLEMMSE_SLURM_CONF=%s\n' \
        "$PARTITION" "$NODE" "$CONF" | $SUDO tee "$STATE_DIR/cluster.env" >/dev/null
}

# --- 0. already up? -----------------------------------------------------------------------------
if command -v sinfo >/dev/null && scontrol ping 2>/dev/null | grep -q UP && [ "$(node_state)" = idle ]; then
    log "cluster already up (node $NODE idle)"
    write_state_file
    exit 0
fi

# --- 1. packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- 2. munge ------------------------------------------------------------------------------------
$SUDO mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
$SUDO chown munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
$SUDO chmod 0700 /etc/munge /var/lib/munge /var/log/munge
$SUDO chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    $SUDO runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --- 3. slurm.conf -------------------------------------------------------------------------------
if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching it"
fi
CPUS="$(nproc)"
MEM_MB="$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)"
$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NEW_CONF="$(mktemp)"
cat >"$NEW_CONF" <<EOF
$MARKER
# One node on loopback for CI; see the script for why each value is what it is.
ClusterName=lemmse-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# GresTypes is left unset: no GPUs (GRES) on the CI node.
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
CONF_CHANGED=0
if ! cmp -s "$NEW_CONF" "$CONF"; then
    $SUDO install -m 0644 "$NEW_CONF" "$CONF"
    CONF_CHANGED=1
fi
rm -f "$NEW_CONF"

# --- 4. daemons ----------------------------------------------------------------------------------
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if running /run/slurmctld.pid && [ "$CONF_CHANGED" = 1 ]; then
    log "slurm.conf changed: reconfiguring"
    $SUDO scontrol reconfigure || true
fi
if ! running /run/slurmctld.pid; then
    log "starting slurmctld"
    $SUDO /usr/sbin/slurmctld -f "$CONF"
fi
for _ in $(seq 1 30); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
scontrol ping | grep -q UP || die "slurmctld is not answering (see /var/log/slurm/slurmctld.log)"
if ! running /run/slurmd.pid; then
    log "starting slurmd"
    $SUDO /usr/sbin/slurmd -f "$CONF"
fi

# --- 5. wait for the node ------------------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
state=""
while [ $SECONDS -lt $deadline ]; do
    state="$(node_state)"
    case "$state" in
        idle|mix|alloc) break ;;
        drain|drng|down) $SUDO scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mix|alloc) ;;
    *) die "node $NODE is '$state' after ${WAIT_S}s (see /var/log/slurm/slurmd.log and slurmctld.log)" ;;
esac
write_state_file
log "cluster up: node $NODE ($CPUS CPUs, ${MEM_MB} MB), partition $PARTITION (default); state in $STATE_DIR/cluster.env"
