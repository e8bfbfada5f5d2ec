#!/usr/bin/env bash
# Bring up a real one-node SLURM cluster on this machine (slurmctld + slurmd +
# munged on $(hostname)), for the tests marked `slurm` and for trying the
# submitit launcher locally. Debian/Ubuntu only (apt-get); no systemd needed:
# the daemons are started directly.
#
# Idempotent: when the cluster is already up, a re-run changes nothing and
# returns in about a second. Run it as root or with sudo:
#
#     sudo scripts/slurm_cluster.sh
#
# Environment knobs (all optional):
#     SLURM_CLUSTER_NAME      ClusterName              (default: regbench)
#     SLURM_PARTITION         name of the one partition (default: debug)
#     SLURM_WAIT_S            how long to wait for the node to become idle (default: 60)
#     SLURM_CRED_EXPIRE       AuthInfo=cred_expire, seconds; a requeued job may
#                             start again cred_expire + 1 s after it was requeued
#                             (default here: 10; SLURM's own: 120; the least
#                             SLURM accepts is 5, below that it logs
#                             "AuthInfo=cred_expire=N invalid" and uses 120)
set -euo pipefail

CLUSTER_NAME=${SLURM_CLUSTER_NAME:-regbench}
PARTITION=${SLURM_PARTITION:-debug}
WAIT_S=${SLURM_WAIT_S:-60}
CRED_EXPIRE=${SLURM_CRED_EXPIRE:-10}
[[ $CRED_EXPIRE =~ ^[0-9]+$ ]] && ((CRED_EXPIRE >= 5)) ||
    { printf '[slurm_cluster] ERROR: SLURM_CRED_EXPIRE must be an integer >= 5\n' >&2; exit 1; }

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/var/run/slurm

log() { printf '[slurm_cluster] %s\n' "$*" >&2; }
die() { printf '[slurm_cluster] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "must run as root (or via sudo)"
    exec sudo -- env SLURM_CLUSTER_NAME="$CLUSTER_NAME" SLURM_PARTITION="$PARTITION" \
        SLURM_WAIT_S="$WAIT_S" SLURM_CRED_EXPIRE="$CRED_EXPIRE" bash "$(readlink -f "$0")" "$@"
fi

# ---------------------------------------------------------------- packages ---
PACKAGES=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
fresh_munge=0
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    [[ " ${missing[*]} " == *" munge "* ]] && fresh_munge=1
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when they are missing or do not know a
    # wanted package.
    need_update=0
    for p in "${missing[@]}"; do
        cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
        [[ -z $cand || $cand == "(none)" ]] && need_update=1
    done
    if ((need_update)); then
        log "apt-get update"
        apt-get update -qq
    fi
    log "apt-get install ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null ||
        { log "install failed; retrying after apt-get update"; apt-get update -qq;
          apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
for b in munged munge slurmctld slurmd sinfo sbatch scontrol; do
    command -v "$b" >/dev/null || die "$b not on PATH after installing ${PACKAGES[*]}"
done

# ------------------------------------------------------------------- munge ---
MUNGE_KEY=/etc/munge/munge.key
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
# The munge package generates a 128-byte key on install; on a fresh install
# (munged not running yet) replace it with the 1 KiB one this script promises.
if [[ ! -s $MUNGE_KEY ]] || { ((fresh_munge)) && ! pgrep -x munged >/dev/null; }; then
    log "creating $MUNGE_KEY (1 KiB random)"
    umask 077
    dd if=/dev/urandom of="$MUNGE_KEY.tmp" bs=1024 count=1 status=none
    mv -f "$MUNGE_KEY.tmp" "$MUNGE_KEY"
fi
[[ $(stat -c %U "$MUNGE_KEY") == munge ]] || chown munge:munge "$MUNGE_KEY"
[[ $(stat -c %a "$MUNGE_KEY") == 400 ]] || chmod 0400 "$MUNGE_KEY"

if ! pgrep -x munged >/dev/null; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"

# -------------------------------------------------------------- slurm.conf ---
HOST=$(hostname)
NCPUS=$(nproc)
# What slurmd itself measures, so the node is never drained for "Low RealMemory".
MEM_MB=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]\+\).*/\1/p')
[[ -n $MEM_MB ]] || MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)

install -d -m 0755 "$CONF_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
install -d -m 0700 "$STATE_DIR"

new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by regbench scripts/slurm_cluster.sh: a one-node test cluster.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again.
AuthInfo=cred_expire=$CRED_EXPIRE
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1

StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# accounting off
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none

# short timeouts, for tests
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
Waittime=0
MessageTimeout=10
# Pending jobs are looked at every 2 s (defaults: main loop 60 s, backfill 30 s),
# so a requeued job starts right after its BeginTime (now + cred_expire) passes.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=2

NodeName=$HOST CPUs=$NCPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

conf_changed=0
if ! cmp -s "$new_conf" "$CONF"; then
    log "writing $CONF"
    install -m 0644 "$new_conf" "$CONF"
    conf_changed=1
fi

# ----------------------------------------------------------------- daemons ---
# A daemon counts as running when it answers: slurmctld to `scontrol ping`,
# the local slurmd to `scontrol show slurmd`. A process that exists but does not
# answer (starting up, or still shutting down after a kill) gets a few seconds.
ctld_answers() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
slurmd_answers() { scontrol show slurmd >/dev/null 2>&1; }
ensure_daemon() {  # name check
    local name=$1 check=$2
    $check && return 0
    for _ in $(seq 50); do
        pgrep -x "$name" >/dev/null || break
        $check && return 0
        sleep 0.2
    done
    if pgrep -x "$name" >/dev/null; then
        die "$name runs (pid $(pgrep -x "$name" | tr '\n' ' ')) but does not answer; see $LOG_DIR/$name.log"
    fi
    log "starting $name"
    "$name"
    for _ in $(seq 100); do $check && return 0; sleep 0.2; done
    die "$name does not answer 20 s after starting; see $LOG_DIR/$name.log"
}
# Daemons that already run read the old slurm.conf; `scontrol reconfigure` does
# not apply everything (AuthInfo=cred_expire, for one, needs a restart), so stop
# them and start them again. Running jobs survive this.
any_daemon() { pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; }
if ((conf_changed)) && any_daemon; then
    log "slurm.conf changed while the daemons run: restarting slurmctld and slurmd"
    scontrol shutdown >/dev/null 2>&1 || true  # needs slurmctld; stops both
    for _ in $(seq 50); do any_daemon || break; sleep 0.2; done
    for d in slurmctld slurmd; do  # whatever is left: by its pid file
        if pgrep -x "$d" >/dev/null && [[ -s $RUN_DIR/$d.pid ]]; then
            kill "$(cat "$RUN_DIR/$d.pid")" 2>/dev/null || true
        fi
    done
    for _ in $(seq 100); do any_daemon || break; sleep 0.2; done
    if any_daemon; then
        die "slurmctld/slurmd still run 30 s after being told to stop; stop them and re-run"
    fi
fi
ensure_daemon slurmctld ctld_answers
ensure_daemon slurmd slurmd_answers

# ------------------------------------------------- wait for the node: idle ---
state=""
deadline=$((SECONDS + WAIT_S))
while ((SECONDS < deadline)); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true)
    case $state in
        # Up and usable. mixed/allocated/completing: a re-run while jobs run.
        idle | mixed | allocated | completing) break ;;
        # Down or drained but responding (no trailing '*'): put it back.
        down | drained | draining | drain | fail | failing)
            log "node $HOST is $state; resuming it"
            scontrol update nodename="$HOST" state=resume || true ;;
    esac
    sleep 1
done
case $state in
    idle | mixed | allocated | completing) ;;
    *)
        reason=$(sinfo -h -n "$HOST" -o '%E' 2>/dev/null || true)
        die "node $HOST is '${state:-not reported}' (reason: ${reason:-none}) after ${WAIT_S}s; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" ;;
esac

sinfo
