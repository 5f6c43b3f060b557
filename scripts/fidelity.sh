#!/bin/sh
# fidelity.sh -- issue 3 item 7: LeNet-5 on Fashion-MNIST trained from scratch with every rule, and the
# BP-trained LeNet-5 fine-tuned with every rule; test errors next to the published BioTorch from-scratch
# errors. Idempotent: finished runs (job keys) are skipped, a killed run resumes from its checkpoint.
#   EPOCHS (default 20), FT_EPOCHS (default 5), JOBS (default 2), OUT (default out/fidelity)
set -e
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-20}; FT_EPOCHS=${FT_EPOCHS:-5}; JOBS=${JOBS:-2}; OUT=${OUT:-out/fidelity}
DB=$OUT/concord.db
mkdir -p "$OUT"
common="--model lenet5 --dataset fashion-mnist --seed 0 --probe 0 --threads 1 --quiet --db $DB"
scratch() {
  ./concord train $common --rule "$1" --epochs "$EPOCHS" --out "$OUT/scratch-$1.ckpt" --resume \
    --job-key "fidelity/scratch/$1/e$EPOCHS" > "$OUT/scratch-$1.log" 2>&1 || { echo "scratch $1 failed: $OUT/scratch-$1.log"; exit 1; }
}
finetune() {
  ./concord finetune $common --from "$OUT/scratch-bp.ckpt" --rule "$1" --epochs "$FT_EPOCHS" --out "$OUT/ft-$1.ckpt" \
    --job-key "fidelity/finetune/$1/e$FT_EPOCHS" > "$OUT/ft-$1.log" 2>&1 || { echo "finetune $1 failed: $OUT/ft-$1.log"; exit 1; }
}
# from scratch: JOBS processes at a time, one BLAS thread each
set -- bp fa dfa usf brsf frsf
while [ $# -gt 0 ]; do
  pids=""
  for i in $(seq 1 "$JOBS"); do [ $# -gt 0 ] && { scratch "$1" & pids="$pids $!"; shift; }; done
  for p in $pids; do wait "$p"; done
done
set -- bp fa dfa usf brsf frsf
while [ $# -gt 0 ]; do
  pids=""
  for i in $(seq 1 "$JOBS"); do [ $# -gt 0 ] && { finetune "$1" & pids="$pids $!"; shift; }; done
  for p in $pids; do wait "$p"; done
done
sqlite3 -header -column "$DB" "
WITH pub(rule, err) AS (VALUES ('bp',9.2),('fa',13.06),('dfa',12.81),('usf',9.69),('brsf',10.02),('frsf',9.61))
SELECT r.rule,
  printf('%.2f', 100*(1-(SELECT test_acc FROM runs s WHERE s.job_key='fidelity/scratch/'||r.rule||'/e$EPOCHS'))) AS scratch_err_pct,
  printf('%.2f', 100*(1-(SELECT test_acc FROM runs f WHERE f.job_key='fidelity/finetune/'||r.rule||'/e$FT_EPOCHS'))) AS bp_finetuned_err_pct,
  printf('%.2f', p.err) AS biotorch_scratch_err_pct
FROM (SELECT DISTINCT rule FROM runs WHERE job_key LIKE 'fidelity/%') r JOIN pub p ON p.rule = r.rule
ORDER BY CASE r.rule WHEN 'bp' THEN 0 WHEN 'fa' THEN 1 WHEN 'dfa' THEN 2 WHEN 'usf' THEN 3 WHEN 'brsf' THEN 4 ELSE 5 END;"
