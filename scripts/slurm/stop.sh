#!/usr/bin/env bash
# Stop the daemons start.sh started, by the PIDs in their pid files.
STATE=${PGLAB_SLURM_STATE:-/tmp/pglab-slurm}
alive() { [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }  # a zombie is dead
pidfiles=("$STATE/slurmd.pid" "$STATE/slurmctld.pid")
[ -e "$STATE/started-munged" ] && pidfiles+=(/run/munge/munged.pid)
rm -f "$STATE/started-munged"
for pidfile in "${pidfiles[@]}"; do
  [ -s "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
done
