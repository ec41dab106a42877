#!/usr/bin/env bash
# A real, one-machine Slurm cluster (with accounting) for trying and testing nightlab.
#
#   scripts/slurm-local.sh up     [DIR]   install the Debian packages if missing (root only),
#                                         start munged, MariaDB, slurmdbd, slurmctld, slurmd;
#                                         prints the environment a client needs on stdout:
#                                           eval "$(scripts/slurm-local.sh up)"
#   scripts/slurm-local.sh down   [DIR]   cancel every job, stop every daemon of DIR
#   scripts/slurm-local.sh status [DIR]   sinfo + squeue, or "not running" (exit 3)
#
# DIR (default ${TMPDIR:-/tmp}/nightlab-slurm) holds everything: configuration, munge key,
# MariaDB data and socket, Slurm state, spool, logs and pid files. Nothing outside DIR is
# written (but by apt-get, whose output goes to DIR/apt.log) and no port is fixed (free ones
# are picked at `up`). Processes are only ever stopped by pid: those of DIR's pid files, and
# after a crash those whose command line names DIR or whose environment holds
# SLURM_CONF=DIR/etc/slurm.conf; never by name, so clusters in other folders, and a system
# Slurm, MariaDB or munge, are never touched.
#
# `up` wipes and rewrites DIR's own subfolders (etc run log mariadb state spool tmp): it refuses
# a DIR that holds anything else and was not made by this script (DIR/.slurm-local).
# Environment: SLURM_LOCAL_TIMEOUT (seconds each daemon may take to come up, default 60);
# SLURM_LOCAL_KEEP=1 leaves the daemons of a failed `up` running, to look around.
#
# Exit status: 0 ok; 1 failure (the relevant log tails are printed); 2 prerequisites missing
# (not root, or the Debian packages could not be installed); 3 `status`: not running.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
CLUSTER=nightlab
UP_TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60} # seconds for each daemon to come up

usage() {
  echo "usage: $0 up|down|status [DIR]   (DIR default: \${TMPDIR:-/tmp}/nightlab-slurm)" >&2
  exit 64
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
CMD=$1
DIR=${2:-${TMPDIR:-/tmp}/nightlab-slurm}
case $CMD in up | down | status) ;; *) usage ;; esac

say() { echo "slurm-local: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# --- the layout of DIR --------------------------------------------------------------------
set_paths() {
  ETC=$DIR/etc
  RUN=$DIR/run
  LOG=$DIR/log
  CONF=$ETC/slurm.conf
  DBDCONF=$ETC/slurmdbd.conf
  MUNGE_KEY=$ETC/munge.key
  MUNGE_SOCKET=$RUN/munge.socket
  MYSQL_DATA=$DIR/mariadb
  MYSQL_SOCKET=$RUN/mariadb.sock
  CTLD_STATE=$DIR/state
  SPOOL=$DIR/spool
  PID_MUNGE=$RUN/munged.pid
  PID_MARIADB=$RUN/mariadb.pid
  PID_DBD=$RUN/slurmdbd.pid
  PID_CTLD=$RUN/slurmctld.pid
  PID_SLURMD=$RUN/slurmd.pid
}

if [ "$CMD" = up ]; then
  if [ "$(id -u)" != 0 ]; then
    say "error: 'up' must run as root (the daemons and the jobs run as root);" \
      "the Debian packages it needs: ${PACKAGES[*]}"
    exit 2
  fi
  mkdir -p "$DIR"
fi
if [ -d "$DIR" ]; then
  DIR=$(cd "$DIR" && pwd -P)
fi
set_paths
export SLURM_CONF=$CONF

# --- pids: only ever ours -----------------------------------------------------------------
# Alive: the process exists and is not a zombie (an exited daemon not yet reaped by init).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# The pid in PIDFILE if that process is alive and belongs to DIR (DIR appears in its command
# line or its environment: a stale pid file whose pid was reused by anything else is ignored).
ours() {
  local pidfile=$1 pid
  [ -r "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' 2>/dev/null <"$pidfile") || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  if tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$DIR/" ||
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF -- "SLURM_CONF=$CONF"; then
    echo "$pid"
    return 0
  fi
  return 1
}

# Alive processes whose environment holds SLURM_CONF=DIR/etc/slurm.conf: the Slurm daemons of
# DIR (started with it), their slurmstepd, and the processes of the jobs submitted to DIR.
env_pids() {
  local f pid
  # shellcheck disable=SC2013 # file names, one a line, without spaces
  for f in $(grep -lsazxF -- "SLURM_CONF=$CONF" /proc/[0-9]*/environ 2>/dev/null); do
    pid=${f#/proc/}
    pid=${pid%/environ}
    alive "$pid" && echo "$pid"
  done
}

# slurmctld, slurmd, slurmstepd, slurmdbd of DIR, whatever their pid files say
our_slurm_pids() {
  local pid exe
  for pid in $(env_pids); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    # slurmd* covers slurmd, slurmd-wlm (Debian's binary) and slurmdbd
    case ${exe##*/} in slurmctld* | slurmd* | slurmstepd*) echo "$pid" ;; esac
  done
}

# Processes of jobs of DIR that outlived their slurmstepd (a crashed cluster): SLURM_JOB_ID
# and our SLURM_CONF in their environment; never this script or one of its ancestors.
our_job_pids() {
  local pid exe mine=" " p=$$ stat
  while [ -n "$p" ] && [ "$p" -gt 1 ]; do
    mine+="$p "
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || break
    stat=${stat##*) }
    p=$(cut -d' ' -f2 <<<"$stat")
  done
  for pid in $(env_pids); do
    [[ $mine == *" $pid "* ]] && continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    case ${exe##*/} in slurmctld* | slurmd* | slurmstepd*) continue ;; esac
    grep -qsaz '^SLURM_JOB_ID=' "/proc/$pid/environ" && echo "$pid"
  done
}

# munged and mariadbd of DIR (DIR in their command line), whatever their pid files say
our_db_munge_pids() {
  local f pid exe
  # shellcheck disable=SC2013 # file names, one a line, without spaces
  for f in $(grep -lsaF -- "$DIR/" /proc/[0-9]*/cmdline 2>/dev/null); do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    alive "$pid" || continue
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    case ${exe##*/} in munged | mariadbd | mysqld) echo "$pid" ;; esac
  done
}

# Stop one process by pid: SIGTERM, wait up to $2 seconds, then SIGKILL.
stop_pid() {
  local pid=$1 wait_s=${2:-10} what=${3:-process} i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  say "$what (pid $pid) ignored SIGTERM for ${wait_s}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
}

stop_pidfile() { # PIDFILE WAIT_S NAME
  local pid
  if pid=$(ours "$1"); then
    stop_pid "$pid" "$2" "$3"
  fi
  rm -f "$1"
}

# Wait until "$@" succeeds, at most $TIMEOUT seconds (set by the caller).
wait_for() {
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

tails() { # the last lines of each log given, for error messages
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    echo "----- tail of $f -----" >&2
    tail -n 25 "$f" >&2
  done
}

ctld_alive() { ours "$PID_CTLD" >/dev/null && scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sinfo -h -N -n localhost -o %t 2>/dev/null | head -n1; }
node_idle() { case $(node_state) in idle | mix | alloc) return 0 ;; *) return 1 ;; esac; }

any_ours_alive() {
  local f
  for f in "$PID_MUNGE" "$PID_MARIADB" "$PID_DBD" "$PID_CTLD" "$PID_SLURMD"; do
    ours "$f" >/dev/null && return 0
  done
  [ -n "$(our_slurm_pids)$(our_job_pids)$(our_db_munge_pids)" ]
}

# --- down ---------------------------------------------------------------------------------
down() {
  local ids i pid
  if ctld_alive; then
    ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [ -n "${ids// /}" ]; then
      say "cancelling jobs: $ids"
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      for ((i = 0; i < 300; i++)); do # KillWait=5: the queue drains in ~5 s; at most 30 s
        [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
        sleep 0.1
      done
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] || say "jobs still queued after 30 s: stopping anyway"
    fi
    scontrol shutdown >/dev/null 2>&1 || true # slurmctld and every slurmd
  fi
  # slurmd, slurmctld (and any slurmstepd left over): by pid, after `scontrol shutdown`
  for pid in $(ours "$PID_SLURMD" || true) $(ours "$PID_CTLD" || true); do
    for ((i = 0; i < 150; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
  done
  stop_pidfile "$PID_SLURMD" 10 slurmd
  stop_pidfile "$PID_CTLD" 10 slurmctld
  stop_pidfile "$PID_DBD" 15 slurmdbd
  for pid in $(our_slurm_pids); do
    stop_pid "$pid" 5 "leftover slurm process"
  done
  for pid in $(our_job_pids); do
    stop_pid "$pid" 5 "leftover job process"
  done
  stop_pidfile "$PID_MARIADB" 30 mariadbd
  stop_pidfile "$PID_MUNGE" 10 munged
  for pid in $(our_db_munge_pids); do # started, but killed before they wrote a pid file
    stop_pid "$pid" 30 "leftover mariadbd/munged"
  done
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MYSQL_SOCKET"
}

# --- up -----------------------------------------------------------------------------------
ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "error: Debian packages missing: ${missing[*]} (as root: apt-get install ${PACKAGES[*]})"
    exit 2
  fi
  say "installing ${missing[*]} (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"; } >"$DIR/apt.log" 2>&1; then
    tail -n 20 "$DIR/apt.log" >&2
    say "error: apt-get install ${missing[*]} failed"
    exit 2
  fi
}

# N free TCP ports outside the kernel's ephemeral range (so no client socket takes them).
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n, ports = int(sys.argv[1]), []
while len(ports) < n:
    port = random.randint(20000, 32000)
    if port in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("", port))
    except OSError:
        continue
    finally:
        s.close()
    ports.append(port)
print(*ports)
EOF
}

write_configs() {
  local hw cpus mem
  read -r CTLD_PORT SLURMD_PORT DBD_PORT MYSQL_PORT <<<"$(free_ports 4)"
  [ -n "$MYSQL_PORT" ] || die "cannot pick free TCP ports (this needs python3)"
  # what slurmd sees (cpus, sockets, cores, threads, memory) becomes the node's definition
  hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  if [ -z "$cpus" ] || [ -z "$mem" ]; then
    die "cannot read CPUs/RealMemory from 'slurmd -C': $hw"
  fi
  DB_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh for $DIR: a one-node cluster; rewritten by every \`up\`.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SPOOL/%n
SlurmctldPidFile=$PID_CTLD
SlurmdPidFile=$PID_SLURMD
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$ETC/plugstack.conf
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# the munge socket for connections to slurmdbd (sacct, sacctmgr, slurmctld): AuthInfo is not
# used for those, and without this they would look for the system's /run/munge socket
AccountingStoragePass=$MUNGE_SOCKET
# Scheduling: look at the queue every second, start jobs as soon as they are submitted
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,sched_min_interval=0,batch_sched_delay=0,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=300
Waittime=0
# Preemption by QOS, off until a QOS is given \`Preempt=...\` (tests/slurm do, with sacctmgr):
# a preempted job is requeued (PreemptMode=REQUEUE; a QOS may say CANCEL instead)
PreemptType=preempt/qos
PreemptMode=REQUEUE
NodeName=localhost NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=1-00:00:00 State=UP
PartitionName=long Nodes=localhost Default=NO MaxTime=INFINITE State=UP
EOF
  : >"$ETC/plugstack.conf" # not the system's /etc/slurm/plugstack.conf

  (
    umask 077
    cat >"$DBDCONF" <<EOF
# Written by scripts/slurm-local.sh for $DIR
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$PID_DBD
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  )
}

start_munge() {
  (umask 077 && dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none)
  munged --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$PID_MUNGE" \
    --log-file="$LOG/munged.log" --seed-file="$RUN/munged.seed" \
    9>&- </dev/null >>"$LOG/munged.log" 2>&1 ||
    {
      tails "$LOG/munged.log"
      die "munged did not start"
    }
  TIMEOUT=$UP_TIMEOUT wait_for munge --socket="$MUNGE_SOCKET" -n ||
    {
      tails "$LOG/munged.log"
      die "munged does not answer on $MUNGE_SOCKET"
    }
}

mysql_client() { mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root "$@"; }

start_mariadb() {
  mkdir -p "$MYSQL_DATA" "$DIR/tmp"
  mariadb-install-db --no-defaults --datadir="$MYSQL_DATA" --user=root \
    --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 ||
    {
      tails "$LOG/mariadb-install.log"
      die "mariadb-install-db failed"
    }
  # mariadbd does not fork: run it in its own session, detached from this shell
  setsid mariadbd --no-defaults --user=root --datadir="$MYSQL_DATA" --tmpdir="$DIR/tmp" \
    --socket="$MYSQL_SOCKET" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --pid-file="$PID_MARIADB" --log-error="$LOG/mariadb.log" --skip-name-resolve \
    --skip-log-bin --innodb-buffer-pool-size=256M --innodb-log-file-size=64M \
    --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
    --max-connections=100 9>&- </dev/null >>"$LOG/mariadb.log" 2>&1 &
  echo $! >"$PID_MARIADB" # mariadbd writes the same pid there once it is up
  disown
  TIMEOUT=$UP_TIMEOUT wait_for mysql_client -e 'SELECT 1' ||
    {
      tails "$LOG/mariadb.log"
      die "MariaDB did not come up on $MYSQL_SOCKET"
    }
  mysql_client -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
    die "cannot create the MariaDB user for slurmdbd"
}

start_slurmdbd() {
  slurmdbd 9>&- </dev/null >>"$LOG/slurmdbd.log" 2>&1 ||
    {
      tails "$LOG/slurmdbd.log"
      die "slurmdbd did not start"
    }
  # the first start creates the tables; registering the cluster also proves it answers
  TIMEOUT=$UP_TIMEOUT wait_for sacctmgr -i add cluster "$CLUSTER" ||
    {
      tails "$LOG/slurmdbd.log" "$LOG/mariadb.log"
      die "slurmdbd did not answer within ${UP_TIMEOUT}s (sacctmgr add cluster $CLUSTER)"
    }
  sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER" ||
    die "cluster $CLUSTER is not registered in slurmdbd"
}

start_slurm() {
  slurmctld -f "$CONF" 9>&- </dev/null >>"$LOG/slurmctld.log" 2>&1 ||
    {
      tails "$LOG/slurmctld.log"
      die "slurmctld did not start"
    }
  slurmd -f "$CONF" -N localhost 9>&- </dev/null >>"$LOG/slurmd.log" 2>&1 ||
    {
      tails "$LOG/slurmd.log"
      die "slurmd did not start"
    }
  TIMEOUT=$UP_TIMEOUT wait_for node_idle ||
    {
      tails "$LOG/slurmctld.log" "$LOG/slurmd.log"
      sinfo -N -l >&2 || true
      die "node 'localhost' is not idle after ${UP_TIMEOUT}s (state: $(node_state || true))"
    }
}

print_env() {
  {
    echo "export SLURM_CONF=$CONF"
  } | tee "$DIR/env.sh"
}

on_failed_up() {
  if [ "$1" -ne 0 ]; then
    say "bring-up failed: stopping what was started (logs: $LOG)"
    down || true
  fi
}

up() {
  local t0=$SECONDS
  if ctld_alive && node_idle; then
    say "already running in $DIR"
    print_env
    return 0
  fi
  if [ ! -e "$DIR/.slurm-local" ] && [ -n "$(ls "$DIR")" ] &&
    ! grep -qs '^# Written by scripts/slurm-local.sh' "$CONF"; then
    die "$DIR is not empty and was not made by $0: give an empty or new DIR"
  fi
  touch "$DIR/.slurm-local"
  ensure_packages
  if any_ours_alive; then
    say "stopping the leftovers of a previous run in $DIR"
    down
  fi
  # a fresh cluster every time: wipe (only) what an earlier `up` wrote in DIR
  rm -rf "$ETC" "$RUN" "$LOG" "$MYSQL_DATA" "$CTLD_STATE" "$SPOOL" "$DIR/tmp" "$DIR/env.sh"
  mkdir -p "$ETC" "$RUN" "$LOG" "$CTLD_STATE" "$SPOOL/localhost"
  chmod 755 "$ETC" "$RUN" # the secrets in ETC are 0600 files; clients of any user need RUN
  local sock_len=${#MUNGE_SOCKET}
  ((${#MYSQL_SOCKET} > sock_len)) && sock_len=${#MYSQL_SOCKET}
  ((sock_len < 100)) || die "DIR is too long for unix sockets ($MYSQL_SOCKET): use a shorter DIR"

  # any failure from here on: stop what was started (the logs stay in DIR/log)
  # (SLURM_LOCAL_KEEP=1 leaves them running, to look around)
  [ -n "${SLURM_LOCAL_KEEP:-}" ] || trap 'on_failed_up $?' EXIT
  write_configs
  say "starting munged";   start_munge
  say "starting MariaDB (127.0.0.1:$MYSQL_PORT)"; start_mariadb
  say "starting slurmdbd (127.0.0.1:$DBD_PORT)"; start_slurmdbd
  say "starting slurmctld (127.0.0.1:$CTLD_PORT) and slurmd (-N localhost)"; start_slurm
  trap - EXIT
  say "up in $((SECONDS - t0))s: $(sinfo -h -o '%P %a %D %t' | tr '\n' ';' | sed 's/;$//')"
  print_env
}

status() {
  if ! ctld_alive; then
    echo "not running ($DIR)"
    any_ours_alive && echo "(but some daemons of $DIR are alive: run '$0 down $DIR')"
    exit 3
  fi
  echo "SLURM_CONF=$CONF"
  sinfo
  squeue
}

lock() { # one slurm-local.sh at a time per DIR (fd 9; the daemons are started without it)
  if ! { touch "$DIR/.lock" && [ -w "$DIR/.lock" ]; } 2>/dev/null; then
    die "cannot write $DIR/.lock: run '$CMD' as the user who ran 'up' (root)"
  fi
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another slurm-local.sh holds $DIR/.lock"
}

# --- main ---------------------------------------------------------------------------------
case $CMD in
  up)
    lock
    up
    ;;
  down)
    if [ ! -d "$DIR" ]; then
      say "nothing in $DIR"
      exit 0
    fi
    lock
    down
    if any_ours_alive; then
      die "some processes of $DIR are still alive:" \
        "$(our_slurm_pids; our_job_pids; our_db_munge_pids)"
    fi
    say "down ($DIR)"
    ;;
  status)
    if [ ! -d "$DIR" ]; then
      echo "not running ($DIR)"
      exit 3
    fi
    status
    ;;
esac
