#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for the SLURM tests (Debian 12, slurm-wlm 22.05, no systemd, as root).
#   bash tests/slurm/cluster.sh start    install the packages if missing, write /etc/slurm/slurm.conf, start
#                                        munged, slurmctld and slurmd in the background, wait until the node is idle
#   bash tests/slurm/cluster.sh stop     end the daemons by the pids in $SLURM_LOCAL_DIR/run/*.pid
#   bash tests/slurm/cluster.sh status   exit 0 if this script's cluster answers
# Environment: SLURM_LOCAL_DIR (scratch: state, spool, logs, pids; default ${TMPDIR:-/tmp}/slurm-local),
#   SLURM_AUTH=munge (default) | none, SLURM_DBD=1 also starts MariaDB + slurmdbd so that sacct works.
# Exit codes: 0 up, 1 started but not idle, 3 not root, 4 packages missing and apt-get unavailable or failing.
# Adapted from ../shared/slurm/slurm-local.sh (see ../shared/SLURM.md); kept here so the tests need nothing else.
set -euo pipefail
D=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/slurm-local}; AUTH=${SLURM_AUTH:-munge}; DBD=${SLURM_DBD:-0}
# The time-limit test relies on these: SIGTERM at the limit, SIGKILL KILL_WAIT seconds later.
KILL_WAIT=${SLURM_KILL_WAIT:-5}

MARK="# written by tests/slurm/cluster.sh"

stop() {
  for f in run/slurmd run/slurmctld run/slurmdbd mysqld/mariadbd run/munged; do
    f=$D/$f.pid; [ -s "$f" ] || continue; p=$(cat "$f")
    if kill "$p" 2>/dev/null; then
      for _ in $(seq 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  # Take our config away too: with a slurm.conf but no slurmctld, every SLURM client call (and so every
  # snakemake start, whose slurm plugin runs `scontrol show config`) waits ~10 s for the controller.
  for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    if [ -f "$f" ] && head -n 1 "$f" | grep -qxF "$MARK"; then rm -f "$f"; fi
  done
}

alive() { [ -s "$D/run/$1.pid" ] && kill -0 "$(cat "$D/run/$1.pid")" 2>/dev/null; }

case "${1:-start}" in
  stop) stop; exit 0 ;;
  status) alive slurmctld && alive slurmd && sinfo -h -o %t 2>/dev/null | grep -qxE 'idle|mix|alloc'; exit $? ;;
  start) ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "needs root (it writes /etc/slurm and starts the SLURM daemons)" >&2; exit 3; }
pkgs="slurmctld slurmd slurm-client"; [ "$AUTH" = munge ] && pkgs="$pkgs munge"
[ "$DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  command -v apt-get >/dev/null || { echo "packages missing ($pkgs) and no apt-get" >&2; exit 4; }
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; } \
    || { echo "apt-get install $pkgs failed" >&2; exit 4; }
fi

stop; rm -rf "$D"; mkdir -p "$D"/{state,spool,log,run,db,mysqld} /etc/slurm
H=$(hostname -s); ACCT=accounting_storage/none; GATHER=jobacct_gather/none
[ "$DBD" = 1 ] && { ACCT="accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1"; GATHER=jobacct_gather/linux; }
# /etc/slurm/slurm.conf, the compiled-in path: the jobstep plugin strips SLURM_* (SLURM_CONF too) before its srun.
# MinJobAge: finished jobs stay in squeue for 10 min (the executor's squeue status check needs >= 3 x its init seconds).
# DefMemPerCPU: a job without a memory request would otherwise take the whole node.
# proctrack/pgid (no cgroups here): at a time limit linuxproc lost the batch step's snakemake once bash had died
# of the SIGTERM and it was reparented; the process group still holds it, so SIGKILL reaches it after KillWait.
cat > /etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=localcluster
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
AuthType=auth/$AUTH
CredType=cred/$AUTH
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/affinity
JobAcctGatherType=$GATHER
AccountingStorageType=$ACCT
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=600
KillWait=$KILL_WAIT
OverTimeLimit=0
ReturnToService=2
MpiDefault=none
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(( $(free -m | awk '/^Mem:/{print $2}') * 8 / 10 )) State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF

if [ "$AUTH" = munge ]; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge "$D/run"
  chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key
  runuser -u munge -- munged --pid-file="$D/run/munged.pid"
fi
if [ "$DBD" = 1 ]; then
  chown mysql:mysql "$D/db" "$D/mysqld"
  mariadb-install-db --user=mysql --datadir="$D/db" >"$D/log/dbinit.log" 2>&1
  S=$D/mysqld/mysqld.sock
  setsid mariadbd --user=mysql --datadir="$D/db" --socket="$S" --pid-file="$D/mysqld/mariadbd.pid" \
    --bind-address=127.0.0.1 --port=3306 --log-error="$D/mysqld/mariadb.log" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 60); do mariadb-admin --socket="$S" ping >/dev/null 2>&1 && break; sleep 0.5; done
  mariadb --socket="$S" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  printf '%s\n' "$MARK" AuthType=auth/$AUTH DbdHost=localhost DbdAddr=127.0.0.1 SlurmUser=root \
    StorageType=accounting_storage/mysql StorageHost=127.0.0.1 StoragePort=3306 StorageUser=slurm \
    StoragePass=slurmpw StorageLoc=slurm_acct_db PidFile=$D/run/slurmdbd.pid LogFile=$D/log/slurmdbd.log \
    > /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf
  slurmdbd
  for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -i add cluster localcluster >/dev/null
fi
slurmctld -c   # -c: clean state; slurmctld and slurmd fork into the background
slurmd
for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
    echo "slurm up: node $H, $(nproc) CPUs; logs and pids under $D"; exit 0
  fi
  sleep 1
done
echo "slurm did not come up" >&2; tail -n 30 "$D"/log/*.log >&2; exit 1
