#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying profiles/slurm on a laptop and in CI.
#
#   tools/slurm-local.sh up      install Debian's slurmctld, slurmd, slurm-client and munge if
#                                absent (apt-get), write /etc/slurm/slurm.conf for this node
#                                (partitions "gpu" and "cpu", as profiles/slurm expects; no
#                                accounting daemon), a munge key if there is none, start munged,
#                                slurmctld and slurmd, and wait until `sinfo` shows the node idle
#   tools/slurm-local.sh down    stop exactly the daemons `up` started (by pid) and remove the
#                                files it wrote; installed packages stay
#   tools/slurm-local.sh status  say whether the daemons `up` started are running
#
# Needs root (runs itself under sudo otherwise) and Debian/Ubuntu. Everything `up` creates besides
# /etc/slurm/slurm.conf and a new munge key lives in the state directory (FCOS_SLURM_STATE,
# default /var/lib/fcos-slurm-local): pids, logs, SLURM's state and spool, and the job
# completion log (jobcomp.log: one line per finished job, what the tests read instead of sacct).
# Environment: FCOS_SLURM_UP_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

STATE=${FCOS_SLURM_STATE:-/var/lib/fcos-slurm-local}
UP_TIMEOUT=${FCOS_SLURM_UP_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_SOCKET=/run/munge/munge.socket.2
MARKER="# written by fcos-amr tools/slurm-local.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)
# The executor plugin polls `squeue` (no sacct without accounting) and reads a finished job's
# state only while slurmctld still holds it: MinJobAge must be >= 3 x the plugin's first
# status-check delay (40 s by default). 300 s is SLURM's own default.
MIN_JOB_AGE=300

die() { echo "slurm-local: $*" >&2; exit 2; }
log() { echo "slurm-local: $*" >&2; }

if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "needs root (or sudo) to install and start SLURM"
    exec sudo --preserve-env=FCOS_SLURM_STATE,FCOS_SLURM_UP_TIMEOUT "$0" "$@"
fi

# pid of a daemon we started, if it is still that daemon (guards against pid reuse)
alive() {
    local name=$1 pidfile=$STATE/$1.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -d /proc/$pid ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name" || return 1
    echo "$pid"
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "packages ${missing[*]} missing and no apt-get (Debian/Ubuntu only)"
    log "installing ${missing[*]} (apt-get)"
    # policy-rc.d (present in containers; created here only for the install when absent) keeps
    # the packages' maintainer scripts from starting daemons this script would not own.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    local rc=0
    { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$STATE/apt.log" 2>&1 || rc=$?
    [[ $made_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed (exit $rc), see $STATE/apt.log"
    printf '%s\n' "${missing[@]}" >"$STATE/installed-packages"
}

write_conf() {
    local host cpus mem_kb mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    mem_mb=$(( mem_kb * 9 / 10 / 1024 ))  # a bit under what is free: slurmd drains a node that has less
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite it"
    fi
    [[ -d /etc/slurm ]] || { mkdir -p /etc/slurm && touch "$STATE/made-etc-slurm"; }
    cat >"$CONF.tmp" <<EOF
$MARKER (state: $STATE)
ClusterName=fcoslocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
# no accounting daemon: job states come from slurmctld (squeue) while they are younger than MinJobAge
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
MinJobAge=$MIN_JOB_AGE
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=$host MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    log "wrote $CONF (node $host, $cpus CPUs, RealMemory=$mem_mb MB, partitions gpu, cpu)"
}

start_munge() {
    if timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; then
        log "munged already answers on $MUNGE_SOCKET; using it"
        return 0
    fi
    if [[ ! -e $MUNGE_KEY ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of="$MUNGE_KEY.tmp" bs=1 count=1024 status=none
        chown munge:munge "$MUNGE_KEY.tmp" && chmod 0400 "$MUNGE_KEY.tmp"
        mv "$MUNGE_KEY.tmp" "$MUNGE_KEY"
        touch "$STATE/made-munge-key"
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    # -F: stay in the foreground, so $! is the daemon's own pid
    # setpriv execs munged as the munge user (no wrapper process left between us and the pid)
    setsid setpriv --reuid=munge --regid=munge --init-groups \
        /usr/sbin/munged -F --pid-file=/run/munge/fcos-munged.pid \
        </dev/null >>"$STATE/munged.out" 2>&1 &
    echo $! >"$STATE/munged.pid"
    local i
    for i in $(seq 50); do
        timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "munged did not answer within 10 s, see $STATE/munged.out"
}

start_daemon() {  # name, then its arguments; -D keeps it in the foreground
    local name=$1; shift
    setsid "/usr/sbin/$name" -D "$@" </dev/null >>"$STATE/$name.out" 2>&1 &
    echo $! >"$STATE/$name.pid"
}

wait_idle() {
    local host state deadline=$(( SECONDS + UP_TIMEOUT ))
    host=$(hostname -s)
    while (( SECONDS < deadline )); do
        state=$(timeout 10 sinfo -h -N -n "$host" -o %T 2>/dev/null | head -1 || true)
        [[ $state == idle ]] && { log "node $host is idle: partitions $(timeout 10 sinfo -h -o %P | tr '\n' ' ')"; return 0; }
        for name in munged slurmctld slurmd; do
            [[ ! -f $STATE/$name.pid ]] || alive "$name" >/dev/null \
                || die "$name exited, see $STATE/$name.out and $STATE/$name.log"
        done
        sleep 1
    done
    die "node $host not idle after ${UP_TIMEOUT} s (state: ${state:-none}), see $STATE/*.log"
}

up() {
    if alive slurmctld >/dev/null || alive slurmd >/dev/null; then
        log "already up (state in $STATE)"; wait_idle; return 0
    fi
    mkdir -p "$STATE/slurmctld" "$STATE/slurmd"
    install_packages
    write_conf
    start_munge
    start_daemon slurmctld -i   # -i: ignore stale state of an earlier run
    start_daemon slurmd
    wait_idle
}

stop() {  # name: TERM, wait up to 20 s, then KILL
    local name=$1 pid i
    pid=$(alive "$name") || { rm -f "$STATE/$name.pid"; return 0; }
    kill -TERM "$pid"
    for i in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
    [[ -d /proc/$pid ]] && { log "$name (pid $pid) ignored SIGTERM; killing it"; kill -KILL "$pid"; }
    rm -f "$STATE/$name.pid"
    log "stopped $name (pid $pid)"
}

down() {
    [[ -d $STATE ]] || { log "nothing to stop ($STATE absent)"; return 0; }
    if alive slurmctld >/dev/null; then
        # jobs of this cluster only: it is ours
        timeout 20 squeue -h -o %i 2>/dev/null | xargs -r timeout 20 scancel 2>/dev/null || true
    fi
    stop slurmd
    stop slurmctld
    stop munged
    if [[ -e $CONF ]] && grep -qF "$MARKER" "$CONF"; then rm -f "$CONF"; fi
    [[ -e $STATE/made-etc-slurm ]] && rmdir /etc/slurm 2>/dev/null || true
    [[ -e $STATE/made-munge-key ]] && rm -f "$MUNGE_KEY"
    rm -f /run/munge/fcos-munged.pid
    rm -rf "$STATE"
    log "down: removed $CONF and $STATE"
}

status() {
    local name pid any=1
    for name in munged slurmctld slurmd; do
        if pid=$(alive "$name"); then echo "$name running (pid $pid)"; any=0; else echo "$name not running"; fi
    done
    return $any
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) die "usage: $0 up|down|status (got '${1:-}')" ;;
esac
