#!/usr/bin/env bash
# A real one-node Slurm (with accounting) on this machine, for tests and for trying
# `--executor slurm` locally. Debian 12 / Slurm 22.05, run as root, no systemd needed.
#
#   slurm/local_slurm.sh install     apt packages (idempotent)
#   slurm/local_slurm.sh configure   write configs, keys, database (idempotent)
#   slurm/local_slurm.sh start       configure, then start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   slurm/local_slurm.sh stop        cancel jobs, stop the daemons by pid, in reverse order
#   slurm/local_slurm.sh status      daemons, node and queue
#   slurm/local_slurm.sh reset       stop, then wipe all state (job ids restart at 1)
#   slurm/local_slurm.sh env         print the export line clients need (SLURM_CONF)
#
# Everything (configs, munge key, database, logs, pids, fake GPU devices) lives under
# NCASEARCH_SLURM_DIR (default /var/lib/ncasearch-slurm). Outside it: the symlink
# /etc/slurm/slurm.conf -> the generated config, made only when that path is free, so that plain
# `sbatch` / `sinfo` find this cluster (`reset` removes it), and munge's socket in /run/munge.
# Every wait is bounded.
#
# Environment (all optional):
#   NCASEARCH_SLURM_DIR      state directory                      [/var/lib/ncasearch-slurm]
#   NCASEARCH_SLURM_CPUS     CPUs the node claims (can exceed the real count) [32]
#   NCASEARCH_SLURM_MEM_MB   memory the node claims, MB [the real amount, at least 65536]
#   NCASEARCH_SLURM_GPUS     fake GPUs (gres) on the node          [2]
#   NCASEARCH_SLURM_DB_PORT  MariaDB TCP port on 127.0.0.1          [6833]
#   NCASEARCH_SLURM_WAIT_S   bound on each wait                     [60]
set -euo pipefail

STATE=${NCASEARCH_SLURM_DIR:-/var/lib/ncasearch-slurm}
CPUS=${NCASEARCH_SLURM_CPUS:-32}
MEM_MB=${NCASEARCH_SLURM_MEM_MB:-}
GPUS=${NCASEARCH_SLURM_GPUS:-2}
DB_PORT=${NCASEARCH_SLURM_DB_PORT:-6833}
WAIT_S=${NCASEARCH_SLURM_WAIT_S:-60}
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
MARKER="$STATE/.ncasearch-slurm"
ETC="$STATE/etc"
RUN="$STATE/run"
LOG="$STATE/log"
# Slurm 22.05 clients (sacctmgr to slurmdbd) ignore AuthInfo=socket=, so munge must use the default.
MUNGE_SOCKET=/run/munge/munge.socket.2
MYSQL_SOCKET="$RUN/mysqld.sock"
SYSTEM_CONF=/etc/slurm/slurm.conf
export SLURM_CONF="$ETC/slurm.conf"

die() { echo "local_slurm: $*" >&2; exit 1; }
say() { echo "local_slurm: $*"; }

# wait_for DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds, at most WAIT_S s.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + WAIT_S))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "gave up after ${WAIT_S}s waiting for $what (logs: $LOG)"
    fi
    sleep 0.2
  done
}

check_args() {
  [[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "NCASEARCH_SLURM_CPUS=$CPUS is not a positive integer"
  [[ -z $MEM_MB || $MEM_MB =~ ^[1-9][0-9]*$ ]] || die "NCASEARCH_SLURM_MEM_MB=$MEM_MB is not a positive integer"
  [[ $GPUS =~ ^[0-9]+$ ]] || die "NCASEARCH_SLURM_GPUS=$GPUS is not a non-negative integer"
  [[ $DB_PORT =~ ^[0-9]+$ ]] && ((DB_PORT > 0 && DB_PORT < 65536)) \
    || die "NCASEARCH_SLURM_DB_PORT=$DB_PORT is not a port in 1..65535"
  [[ $WAIT_S =~ ^[1-9][0-9]*$ ]] || die "NCASEARCH_SLURM_WAIT_S=$WAIT_S is not a positive integer"
  [[ $STATE == /* && $STATE != / ]] || die "NCASEARCH_SLURM_DIR=$STATE must be an absolute path other than /"
  ((EUID == 0)) || die "must run as root (it starts system daemons); running as uid $EUID"
}

require_binaries() {
  local b missing=()
  for b in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sbatch sinfo sacctmgr; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}; run: $0 install"
}

cmd_install() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then say "packages already installed"; return; fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# write_file PATH MODE: stdin to PATH through a temp file in the same directory, only if changed.
write_file() {
  local path=$1 mode=$2 tmp
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then rm -f "$tmp"; else mv -f "$tmp" "$path"; fi
}

node_name() { hostname -s; }

# The hardware line `slurmd -C` reports, with CPUs and memory raised: config_overrides lets the
# node claim more than it has, so several jobs run at once and a study's default request
# (8 CPUs, 32 GB per trial) is accepted. Memory is not a consumable here, nor enforced.
node_line() {
  local mem=$MEM_MB
  if [[ -z $mem ]]; then
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    [[ -n $mem ]] || die "could not read RealMemory from 'slurmd -C'"
    ((mem >= 65536)) || mem=65536
  fi
  local gres=""
  ((GPUS > 0)) && gres=" Gres=gpu:$GPUS"
  echo "NodeName=$(node_name) NodeAddr=127.0.0.1 CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$mem$gres State=UNKNOWN"
}

write_slurm_conf() {
  local host
  host=$(node_name)
  write_file "$ETC/slurm.conf" 644 <<EOF
# Generated by slurm/local_slurm.sh; edits are overwritten on the next start.
ClusterName=ncasearch
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits for the previous launch credential to expire (default 120 s).
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups: works in containers and without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Schedule immediately instead of on the default multi-second ticks (submit-to-result ~3 s -> ~1 s).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
KillWait=5
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
# submitit polls sacct: without accounting a cancelled job's result() never returns.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
GresTypes=gpu
$(node_line)
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

write_slurmdbd_conf() {
  local pass
  pass=$(cat "$ETC/db.pass")
  # slurmdbd refuses a config readable by others.
  write_file "$ETC/slurmdbd.conf" 600 <<EOF
# Generated by slurm/local_slurm.sh.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
}

write_my_cnf() {
  write_file "$ETC/my.cnf" 644 <<EOF
[mysqld]
user=root
datadir=$STATE/mysql
socket=$MYSQL_SOCKET
pid-file=$RUN/mariadbd.pid
log-error=$LOG/mariadbd.log
bind-address=127.0.0.1
port=$DB_PORT
skip-name-resolve
skip-log-bin
performance-schema=OFF
innodb_buffer_pool_size=64M
innodb_lock_wait_timeout=900
[client]
socket=$MYSQL_SOCKET
user=root
EOF
}

# Fake GPUs: character devices Slurm can stat; jobs asking for gres get CUDA_VISIBLE_DEVICES.
write_gres() {
  local i
  mkdir -p "$STATE/dev"
  for ((i = 0; i < GPUS; i++)); do
    [[ -c $STATE/dev/nvidia$i ]] || mknod "$STATE/dev/nvidia$i" c 195 "$i" \
      || die "mknod $STATE/dev/nvidia$i failed (fake GPUs need CAP_MKNOD; set NCASEARCH_SLURM_GPUS=0)"
  done
  if ((GPUS > 0)); then
    echo "Name=gpu File=$STATE/dev/nvidia[0-$((GPUS - 1))]" | write_file "$ETC/gres.conf" 644
  else
    : | write_file "$ETC/gres.conf" 644
  fi
}

init_database() {
  [[ -d $STATE/mysql/mysql ]] && return
  say "initialising the accounting database"
  rm -rf "$STATE/mysql"
  mariadb-install-db --defaults-file="$ETC/my.cnf" --auth-root-authentication-method=socket \
    --skip-test-db >"$LOG/mariadb-install-db.log" 2>&1 \
    || die "mariadb-install-db failed, see $LOG/mariadb-install-db.log"
}

link_system_conf() {
  if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$ETC/slurm.conf" ]]; then return; fi
  if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
    say "$SYSTEM_CONF exists and is not ours; clients need: export SLURM_CONF=$ETC/slurm.conf"
    return
  fi
  mkdir -p "$(dirname "$SYSTEM_CONF")"
  ln -s "$ETC/slurm.conf" "$SYSTEM_CONF"
}

cmd_configure() {
  require_binaries
  if [[ -e $STATE && ! -e $MARKER && -n $(ls -A "$STATE" 2>/dev/null) ]]; then
    die "$STATE exists, is not empty and was not made by this script; choose NCASEARCH_SLURM_DIR"
  fi
  mkdir -p "$STATE" "$ETC" "$RUN" "$LOG" "$STATE/ctld" "$STATE/spool" "$STATE/munge"
  touch "$MARKER"
  chmod 700 "$STATE/munge"
  [[ -s $STATE/munge/munge.key ]] || mungekey --create --keyfile="$STATE/munge/munge.key"
  chmod 400 "$STATE/munge/munge.key"
  if [[ ! -s $ETC/db.pass ]]; then
    (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$ETC/db.pass")
  fi
  write_my_cnf
  write_slurmdbd_conf
  write_gres
  write_slurm_conf
  init_database
  link_system_conf
}

# proc_alive PID NAME: PID is a live (non-zombie) process whose command line contains NAME.
proc_alive() {
  local pid=$1 name=$2
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

# read_pid PIDFILE: the pid in it; fails when the file is gone (a daemon removes it as it exits).
read_pid() { tr -dc '0-9' 2>/dev/null <"$1"; }

pid_alive() {
  local pid
  pid=$(read_pid "$1") || return 1
  proc_alive "$pid" "$2"
}

munge_answers() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }

start_munged() {
  pid_alive "$STATE/munge/munged.pid" munged && return
  if munge_answers >/dev/null 2>&1; then
    say "using the munged already listening on $MUNGE_SOCKET"
    return
  fi
  # /run is a tmpfs: the socket directory is gone after a reboot.
  mkdir -p "$(dirname "$MUNGE_SOCKET")"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  munged --force --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$LOG/munged.log" \
    --seed-file="$STATE/munge/munged.seed" \
    || die "munged failed to start, see $LOG/munged.log"
  wait_for "munged to answer on $MUNGE_SOCKET" munge_answers
}

db_sql() { mariadb --defaults-file="$ETC/my.cnf" -e "$1"; }

start_mariadbd() {
  if ! pid_alive "$RUN/mariadbd.pid" mariadbd; then
    rm -f "$MYSQL_SOCKET"
    setsid mariadbd --defaults-file="$ETC/my.cnf" </dev/null >>"$LOG/mariadbd.out" 2>&1 &
    wait_for "mariadbd to accept connections" db_sql "SELECT 1"
  fi
  local pass
  pass=$(cat "$ETC/db.pass")
  db_sql "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
    ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
    || die "could not create the slurm database user, see $LOG/mariadbd.log"
}

start_slurmdbd() {
  if ! pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
    slurmdbd || die "slurmdbd failed to start, see $LOG/slurmdbd.log"
  fi
  wait_for "slurmdbd to answer sacctmgr" sacctmgr -n show cluster
  if [[ -z $(sacctmgr -n -P show cluster format=cluster where cluster=ncasearch) ]]; then
    sacctmgr -i add cluster ncasearch >/dev/null || die "sacctmgr could not add the cluster"
  fi
}

node_state() { sinfo -h -N -n "$(node_name)" -o %t 2>/dev/null | head -1; }

node_up() { [[ $(node_state) =~ ^(idle|mix|alloc|comp)$ ]]; }

start_slurm() {
  if ! pid_alive "$RUN/slurmctld.pid" slurmctld; then
    slurmctld -i || die "slurmctld failed to start, see $LOG/slurmctld.log"
  fi
  wait_for "slurmctld to answer scontrol ping" bash -c 'scontrol ping | grep -q UP'
  if ! pid_alive "$RUN/slurmd.pid" slurmd; then
    slurmd || die "slurmd failed to start, see $LOG/slurmd.log"
  fi
  # A drain or down state survives restarts; resume it once slurmd has registered.
  wait_for "slurmd to register" bash -c "[[ -n \$(sinfo -h -N -o %t) && \$(sinfo -h -N -o %t) != unk* ]]"
  if [[ $(node_state) =~ ^(drain|drng|down|fail) ]]; then
    scontrol update nodename="$(node_name)" state=resume || true
  fi
  wait_for "node $(node_name) to be idle (state: $(node_state))" node_up
}

cmd_start() {
  local t0=$SECONDS
  cmd_configure
  start_munged
  start_mariadbd
  start_slurmdbd
  start_slurm
  say "up in $((SECONDS - t0)) s: node $(node_name) $(node_state), $CPUS CPUs, $GPUS fake GPUs; SLURM_CONF=$SLURM_CONF"
}

# stop_pid PIDFILE NAME: SIGTERM, wait (bounded), then SIGKILL. A zombie counts as stopped.
stop_pid() {
  local pidfile=$1 name=$2 pid deadline
  pid=$(read_pid "$pidfile") || return 0
  proc_alive "$pid" "$name" || { rm -f "$pidfile"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + WAIT_S))
  while proc_alive "$pid" "$name"; do
    if ((SECONDS >= deadline)); then
      say "$name (pid $pid) ignored SIGTERM for ${WAIT_S}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  rm -f "$pidfile"
}

# Cancel this cluster's jobs while slurmd still runs, so no job process outlives the daemons.
cancel_jobs() {
  pid_alive "$RUN/slurmctld.pid" slurmctld || return 0
  local jobs
  jobs=$(squeue -h -o %A 2>/dev/null || true)
  [[ -z $jobs ]] && return 0
  say "cancelling jobs: $(echo $jobs)"
  # shellcheck disable=SC2086
  scancel $jobs 2>/dev/null || true
  pid_alive "$RUN/slurmd.pid" slurmd || return 0
  local deadline=$((SECONDS + WAIT_S))
  while [[ -n $(squeue -h -o %A 2>/dev/null) ]]; do
    if ((SECONDS >= deadline)); then say "jobs still listed after ${WAIT_S}s: $(squeue -h -o '%A %T' | tr '\n' ' ')"; break; fi
    sleep 0.2
  done
}

cmd_stop() {
  [[ -d $STATE ]] || { say "nothing to stop ($STATE does not exist)"; return; }
  [[ -e $MARKER ]] || die "$STATE has no $MARKER; not touching a directory this script did not make"
  cancel_jobs
  stop_pid "$RUN/slurmd.pid" slurmd
  stop_pid "$RUN/slurmctld.pid" slurmctld
  stop_pid "$RUN/slurmdbd.pid" slurmdbd
  stop_pid "$RUN/mariadbd.pid" mariadbd
  stop_pid "$STATE/munge/munged.pid" munged
  say "stopped"
}

cmd_status() {
  local rc=0 d f
  for d in munged:"$STATE/munge/munged.pid" mariadbd:"$RUN/mariadbd.pid" slurmdbd:"$RUN/slurmdbd.pid" \
    slurmctld:"$RUN/slurmctld.pid" slurmd:"$RUN/slurmd.pid"; do
    f=${d#*:}
    if pid_alive "$f" "${d%%:*}"; then echo "${d%%:*}: running (pid $(cat "$f"))"; else echo "${d%%:*}: stopped"; rc=3; fi
  done
  if ((rc == 0)); then
    sinfo -N -o "%N %t %c %G" || rc=3
    squeue || rc=3
  fi
  return $rc
}

cmd_reset() {
  cmd_stop
  # Remove the link before the directory it points into.
  if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$ETC/slurm.conf" ]]; then rm -f "$SYSTEM_CONF"; fi
  if [[ -d $STATE ]]; then
    [[ -e $MARKER ]] || die "$STATE has no $MARKER; not deleting a directory this script did not make"
    rm -rf "$STATE"
  fi
  say "state wiped ($STATE)"
}

main() {
  local cmd=${1:-}
  case $cmd in
    install) ((EUID == 0)) || die "install must run as root"; cmd_install ;;
    configure) check_args; cmd_configure ;;
    start) check_args; cmd_start ;;
    stop) check_args; cmd_stop ;;
    status) cmd_status ;;
    reset) check_args; cmd_reset ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) die "unknown command '${cmd}'; valid: install configure start stop status reset env" ;;
  esac
}

main "$@"
