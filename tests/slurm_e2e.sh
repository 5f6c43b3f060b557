#!/bin/sh
# slurm_e2e.sh -- the Slurm engine end to end on a real single-node Slurm cluster (tests/test_slurm.c runs
# it from `make test`; alone: sh tests/slurm_e2e.sh [./concord]).
#
# Installs slurm-wlm and munge (scripts/deps.sh slurm; exit 77 = skipped, when they cannot be installed),
# starts munged (own key and socket), slurmctld and slurmd on 127.0.0.1 with non-default ports and every
# file under one temporary directory (proctrack/linuxproc, task/none, select/cons_tres, no cgroups,
# MaxArraySize 4 so the stages really split into several arrays), then:
#   1. submits tests' tiny suite with one injected failure: one fine-tune's checkpoint path is a
#      directory, so that job fails (and its attack jobs refuse to start: their dependency is not done);
#   2. checks `suite status` (failed jobs counted), resubmits with --resume (only the missing jobs go),
#   3. checks the database: every planned run and eval exactly once, runs finished, no duplicated epoch,
#      and that a second `concord db merge` of the same shards changes nothing (dump identical).
# Everything is torn down by a trap, also on failure: scancel, daemons stopped by PID, directory removed.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EXE=${1:-${CONCORD_EXE:-./concord}}
case "$EXE" in /*) ;; *) EXE="$ROOT/$EXE" ;; esac
[ -x "$EXE" ] || { echo "slurm_e2e: $EXE is missing; build it first (make concord)" >&2; exit 1; }
if ! sh scripts/deps.sh slurm >/dev/null 2>&1; then
  echo "slurm_e2e: SKIPPED: slurm-wlm and munge are not installed and could not be installed (sh scripts/deps.sh slurm needs root and apt)" >&2
  exit 77
fi
for b in munged slurmctld slurmd sbatch squeue scontrol scancel sqlite3; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || { echo "slurm_e2e: $b not found after installing slurm-wlm and munge" >&2; exit 1; }
done
PATH="$PATH:/usr/sbin"

T=$(mktemp -d /tmp/concord-slurm.XXXXXX) || exit 1
export SLURM_CONF="$T/slurm.conf"
MUNGE_PID="" CTLD_PID="" SLURMD_PID=""
start=$(date +%s)

cleanup() {
  rc=$?
  trap - EXIT INT TERM
  trap '' PIPE # a reader that went away must not stop the teardown
  if [ -n "$CTLD_PID" ] && kill -0 "$CTLD_PID" 2>/dev/null; then
    scancel --me >/dev/null 2>&1
    i=0; while [ $i -lt 50 ] && [ -n "$(squeue --me -h 2>/dev/null)" ]; do sleep 0.2; i=$((i + 1)); done
  fi
  # the last job steps end on their own once their jobs are gone (wait, never kill what we did not start)
  i=0; while [ $i -lt 50 ] && pgrep -x slurmstepd >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
  for p in $SLURMD_PID $CTLD_PID $MUNGE_PID; do
    kill "$p" 2>/dev/null
    i=0; while [ $i -lt 50 ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$p" 2>/dev/null
  done
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "slurm_e2e: FAILED (exit $rc); daemon logs:" >&2
    for f in "$T"/slurmctld.log "$T"/slurmd.log "$T"/munged.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -15 "$f" >&2; }; done
    for f in "$T"/out/logs/slurm-*.out "$T"/out/logs/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -4 "$f" >&2; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "slurm_e2e: $*" >&2; exit 1; }
step() { echo "slurm_e2e: [$(( $(date +%s) - start )) s] $*"; }

# ---- munge: its own key, socket, pid, log and seed files
dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$T/munge.key"
munged --foreground --force --key-file="$T/munge.key" --socket="$T/munge.sock" --pid-file="$T/munged.pid" \
  --log-file="$T/munged.log" --seed-file="$T/munged.seed" >/dev/null 2>&1 &
MUNGE_PID=$!

# ---- slurm: one node on loopback, non-default ports, all state in $T
NODE=concord-e2e
CPUS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
PORT=$((20000 + $$ % 20000))
mkdir -p "$T/state" "$T/spool"
cat > "$SLURM_CONF" <<EOF
ClusterName=concorde2e
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MaxArraySize=4
MinJobAge=600
InactiveLimit=0
KillWait=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=e2e Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
i=0; while [ ! -S "$T/munge.sock" ]; do
  i=$((i + 1)); [ $i -gt 50 ] && fail "munged did not start (log: $(tail -3 "$T/munged.log" 2>/dev/null))"; sleep 0.1
done
slurmctld -D -i -f "$SLURM_CONF" >"$T/slurmctld.out" 2>&1 &
CTLD_PID=$!
slurmd -D -N "$NODE" -f "$SLURM_CONF" >"$T/slurmd.out" 2>&1 &
SLURMD_PID=$!
i=0; until sinfo -h -o %T 2>/dev/null | grep -q idle; do
  i=$((i + 1)); [ $i -gt 150 ] && fail "the node never became idle: $(sinfo 2>&1 | tail -2)"
  kill -0 "$CTLD_PID" 2>/dev/null || fail "slurmctld exited: $(tail -3 "$T/slurmctld.out" "$T/slurmctld.log" 2>/dev/null)"
  kill -0 "$SLURMD_PID" 2>/dev/null || fail "slurmd exited: $(tail -3 "$T/slurmd.out" "$T/slurmd.log" 2>/dev/null)"
  sleep 0.2
done
step "cluster up: munged $MUNGE_PID, slurmctld $CTLD_PID, slurmd $SLURMD_PID on 127.0.0.1:$PORT, MaxArraySize $(scontrol show config | sed -n 's/^MaxArraySize *= *//p')"

# ---- the suite (synthetic data; 2 seeds so stages need several arrays of at most 4 tasks)
cat > "$T/e2e.ini" <<EOF
[suite]
name     = e2e
datasets = synthetic:400:1x8x8:4
models   = mlp
seeds    = 0, 1
[pretrain]
rules  = bp
epochs = 1
hidden = 16
val    = 50
probe  = 0
[finetune]
rules  = bp, usf, dfa
lr.dfa = 0.001
epochs = 2
val    = 50
probe  = 0
[attack fgsm]
attacks = fgsm
eps     = 0, 0.1
grads   = true, feedback, transfer:bp
limit   = 40
EOF
OUT="$T/out"
DB="$OUT/concord.db"
PLAN=$("$EXE" suite plan "$T/e2e.ini" --out "$OUT") || fail "suite plan failed: $PLAN"
RUNS=$(echo "$PLAN" | sed -n 's/.*record \([0-9]*\) runs and \([0-9]*\) evals.*/\1/p')
EVALS=$(echo "$PLAN" | sed -n 's/.*record \([0-9]*\) runs and \([0-9]*\) evals.*/\2/p')
NJOBS=$(echo "$PLAN" | sed -n 's/^\([0-9]*\) jobs:.*/\1/p')
[ -n "$RUNS" ] && [ -n "$EVALS" ] && [ -n "$NJOBS" ] || fail "cannot read the expected row counts from: $PLAN"
# the injected failure: the usf fine-tune of seed 1 cannot write its checkpoint (a directory is in the way)
BAD=$(echo "$PLAN" | awk '/finetune mlp usf .* seed 1 /{print $2}')
[ -n "$BAD" ] || fail "no usf seed-1 fine-tune in the plan"
mkdir -p "$OUT/ckpt/$BAD.ckpt"
step "plan: $NJOBS jobs, $RUNS runs, $EVALS evals expected; injected failure: $BAD"

wait_queue() { # until no job of ours is queued or running (at most $1 s)
  i=0; while [ -n "$(squeue --me -h 2>/dev/null)" ]; do
    i=$((i + 1)); [ $i -gt $(($1 * 5)) ] && fail "jobs still queued after $1 s: $(squeue --me 2>&1 | head -8)"; sleep 0.2
  done
}

# 1. submit
SUB=$("$EXE" suite run "$T/e2e.ini" --engine slurm --out "$OUT" 2>&1) || fail "submission failed: $SUB"
echo "$SUB" | sed 's/^/    /'
NARR=$(echo "$SUB" | grep -c 'submitted .* stage, array')
[ "$NARR" -ge 4 ] || fail "expected the stages split into arrays of at most 4 tasks, got $NARR arrays"
echo "$SUB" | grep -q 'submitted the merge' || fail "no merge job submitted"
AGAIN=$("$EXE" suite run "$T/e2e.ini" --engine slurm --out "$OUT" 2>&1) && fail "a second submission while the first runs was accepted: $AGAIN"
echo "$AGAIN" | grep -Eq 'still queued or running|pass --resume' || fail "unexpected refusal: $AGAIN"
wait_queue 120
step "first submission finished"
ST=$("$EXE" suite status "$T/e2e.ini" --out "$OUT" 2>&1)
echo "$ST" | sed 's/^/    /'
echo "$ST" | grep -q " 0 running" || fail "status reports running jobs after the queue drained"
echo "$ST" | grep -Eq " [1-9][0-9]* failed" || fail "status does not count the injected failure"
echo "$ST" | grep -q "$BAD" || fail "status does not list the failed job $BAD"
[ -f "$DB" ] || fail "the merge job did not create $DB"
[ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM runs WHERE job_key = '$BAD' AND status = 'finished'")" -eq 0 ] ||
  fail "the injected failure $BAD is recorded as finished"
[ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM runs WHERE status = 'finished'")" -eq $((RUNS - 1)) ] ||
  fail "expected every run but $BAD finished after the first submission"
FIRST_EVALS=$(sqlite3 "$DB" "SELECT COUNT(*) FROM evals")
[ "$FIRST_EVALS" -lt "$EVALS" ] || fail "all evals present although a fine-tune failed"

# 2. resume: the cause is removed, only the missing jobs are submitted
rm -rf "$OUT/ckpt/$BAD.ckpt"
RES=$("$EXE" suite run "$T/e2e.ini" --engine slurm --out "$OUT" --resume 2>&1) || fail "resume failed: $RES"
echo "$RES" | sed 's/^/    /'
NSUB=$(echo "$RES" | sed -n 's/.*: \([0-9]*\) jobs* submitted in.*/\1/p')
NDONE=$(echo "$RES" | sed -n 's/.*(\([0-9]*\) already done).*/\1/p')
[ -n "$NSUB" ] && [ -n "$NDONE" ] || fail "cannot read the resume summary"
[ $((NSUB + NDONE)) -eq "$NJOBS" ] || fail "resume: $NSUB submitted + $NDONE done != $NJOBS jobs"
[ "$NSUB" -ge 2 ] && [ "$NSUB" -lt "$NJOBS" ] || fail "resume submitted $NSUB of $NJOBS jobs; expected only the failed one and its dependents"
wait_queue 120
step "resumed submission finished ($NSUB jobs)"

# 3. the database: complete, nothing twice
q() { sqlite3 "$DB" "$1"; }
[ "$(q 'SELECT COUNT(*) FROM runs')" -eq "$RUNS" ] || fail "runs: $(q 'SELECT COUNT(*) FROM runs') rows, expected $RUNS"
[ "$(q 'SELECT COUNT(DISTINCT job_key) FROM runs')" -eq "$RUNS" ] || fail "duplicated run keys"
[ "$(q "SELECT COUNT(*) FROM runs WHERE status = 'finished'")" -eq "$RUNS" ] || fail "not every run finished: $(q 'SELECT job_key, status FROM runs')"
[ "$(q 'SELECT COUNT(*) FROM evals')" -eq "$EVALS" ] || fail "evals: $(q 'SELECT COUNT(*) FROM evals') rows, expected $EVALS"
[ "$(q 'SELECT COUNT(DISTINCT job_key) FROM evals')" -eq "$EVALS" ] || fail "duplicated eval keys"
[ "$(q 'SELECT COUNT(*) FROM (SELECT run_id, epoch FROM epochs GROUP BY run_id, epoch HAVING COUNT(*) > 1)')" -eq 0 ] || fail "duplicated epochs"
[ "$(q "SELECT COUNT(*) FROM runs WHERE kind = 'finetune' AND parent_run IS NULL")" -eq 0 ] || fail "fine-tunes without their parent run after the merge"
[ "$(q 'SELECT COUNT(*) FROM evals WHERE run_id IS NULL')" -eq 0 ] || fail "evals without their target run after the merge"
[ "$(q "SELECT COUNT(*) FROM evals WHERE grad_source = 'transfer' AND transfer_run IS NULL")" -eq 0 ] || fail "transfer evals without their surrogate run"
ST=$("$EXE" suite status "$T/e2e.ini" --out "$OUT" 2>&1)
echo "$ST" | grep -q "$NJOBS jobs: $NJOBS done, 0 running, 0 failed, 0 pending" || fail "final status: $ST"
BEFORE=$(sqlite3 "$DB" .dump | md5sum)
M=$("$EXE" db merge --into "$DB" "$OUT/shards" 2>&1) || fail "merging again failed: $M"
echo "    $M" | tail -1
AFTER=$(sqlite3 "$DB" .dump | md5sum)
[ "$BEFORE" = "$AFTER" ] || fail "a second merge of the same shards changed the database"
echo "$M" | tail -1 | grep -q "runs 0 added, 0 replaced" || fail "a second merge added or replaced runs: $M"
step "ok: $RUNS runs and $EVALS evals, each once; a second merge changes nothing"
exit 0
