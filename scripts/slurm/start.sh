#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (munged + slurmctld + slurmd, no systemd),
# for testing pglab's SLURM launcher: `hardware=slurm hardware.cluster.partition=debug`.
# Needs root and Debian's slurm-wlm and munge packages. Stop it with stop.sh.
#
#   sudo apt-get install slurm-wlm munge && sudo scripts/slurm/start.sh
#   export PATH=$PWD/scripts/slurm/bin:$PATH     # the sacct stand-in (see bin/sacct)
set -euo pipefail
STATE=${PGLAB_SLURM_STATE:-/tmp/pglab-slurm}
HOST=$(hostname -s)
# leave 512 MB of headroom below what slurmd detects, or the node drains ("Low RealMemory")
MEM=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 512 ))
NODE=$(slurmd -C | head -1 | sed "s/RealMemory=[0-9]*/RealMemory=$MEM/")
# a test cluster starts empty: no jobs or node states left from an earlier start
rm -rf "$STATE/ctld" "$STATE/spool"
mkdir -p "$STATE/ctld" "$STATE/spool" /etc/slurm

# munge: the key, its runtime folders owned by the munge user, the daemon as that user
[ -s /etc/munge/munge.key ] || mungekey --create --force
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! (munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1); then
  runuser -u munge -- /usr/sbin/munged
  touch "$STATE/started-munged"   # stop.sh stops munged only if this script started it
  for _ in $(seq 50); do (munge -n </dev/null | unmunge >/dev/null 2>&1) && break; sleep 0.1; done
fi

# keep a slurm.conf that is not ours
if [ -f /etc/slurm/slurm.conf ] && ! grep -q '^ClusterName=pglab-test$' /etc/slurm/slurm.conf; then
  cp /etc/slurm/slurm.conf "/etc/slurm/slurm.conf.before-pglab.$(date +%s)"
fi

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=pglab-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=3600
KillWait=5
Waittime=0
$NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

/usr/sbin/slurmctld -c   # -c: clear all saved state (jobs, node states)
/usr/sbin/slurmd
for _ in $(seq 100); do
  if sinfo --noheader --format=%T 2>/dev/null | grep -qx idle; then
    sinfo
    exit 0
  fi
  sleep 0.2
done
sinfo >&2
echo "start.sh: the node did not become idle; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
exit 1
