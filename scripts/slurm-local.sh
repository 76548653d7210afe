#!/usr/bin/env bash
# A one-node SLURM on this machine, to try (and test) `ringattn sbatch` without a cluster.
#
#   bash scripts/slurm-local.sh start    # installs slurm-wlm + munge if missing, starts munged,
#                                        # slurmctld and slurmd; waits until the node is idle
#   bash scripts/slurm-local.sh status   # the daemons this script started, and `sinfo`
#   bash scripts/slurm-local.sh stop     # ends only the daemons this script started (pid files)
#
# Idempotent: `start` on a running SLURM only checks it. The node is sized from `nproc` and
# MemTotal; one partition `local` (default) with OverSubscribe=YES. It writes
# /etc/slurm/slurm.conf only when that file is missing or was written by this script (marker line),
# so a real cluster's configuration is never touched. Needs root (Debian/Ubuntu, apt-get).
# State, logs and pid files live under ${RINGATTN_SLURM_DIR:-/var/lib/ringattn-slurm}.
set -euo pipefail

STATE=${RINGATTN_SLURM_DIR:-/var/lib/ringattn-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by ringattn scripts/slurm-local.sh"

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "slurmctld/munged missing and no apt-get: install slurm-wlm and munge"
    [[ $(id -u) -eq 0 ]] || die "installing slurm-wlm and munge needs root"
    say "apt-get install slurm-wlm munge"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
}

# True when the process in pid file $1 is alive.
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
    fi
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
    cat >"$CONF" <<EOF
$MARKER
ClusterName=ringattn-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$host CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already answering (ours or the system's)
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || true
}

wait_idle() {
    local i state
    for i in $(seq 1 60); do
        state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n1 || true)
        case $state in
        idle* | mix* | alloc*) say "node $(hostname -s) is $state"; return 0 ;;
        down* | drain* | unk*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    die "node not idle after 60 s (state '${state:-none}'); see $STATE/log/"
}

start() {
    install_packages
    mkdir -p "$STATE"
    write_conf
    start_munge
    alive "$STATE/slurmctld.pid" || { say "starting slurmctld"; slurmctld; }
    alive "$STATE/slurmd.pid" || { say "starting slurmd"; slurmd; }
    wait_idle
}

stop() {
    local name
    for name in slurmd slurmctld munged; do
        if alive "$STATE/$name.pid"; then
            say "stopping $name ($(cat "$STATE/$name.pid"))"
            kill "$(cat "$STATE/$name.pid")" || true
        fi
        rm -f "$STATE/$name.pid"
    done
}

status() {
    local name
    for name in munged slurmctld slurmd; do
        if alive "$STATE/$name.pid"; then say "$name running ($(cat "$STATE/$name.pid"))"; else say "$name not running"; fi
    done
    sinfo 2>/dev/null || true
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: bash scripts/slurm-local.sh start|stop|status" >&2; exit 2 ;;
esac
