#!/bin/sh
# ref_autoattack.sh -- reproduce the measurements of docs/ref_autoattack.md:
#   1. build ./concord, train LeNet-5 on Fashion-MNIST with BP (3 epochs), fine-tune it with uSF (2 epochs);
#   2. the reference AutoAttack (scripts/ref_autoattack.py, standard version) on the first N test
#      examples at Linf eps 0.1 and 8/255, per model;
#   3. independent cross-checks: the reference APGD-CE and Square run alone, next to Concord's own
#      PGD (100 steps, 5 restarts) and Square (5,000 queries, p_init 0.8) on the same examples;
#   4. Concord's own AutoAttack and APGD-CE on the same examples, compared per example with the reference
#      (scripts/autoattack_check.py; exits non-zero when Concord misses the acceptance criteria).
# usage: sh scripts/ref_autoattack.sh [OUTDIR (default out/ref_autoattack)] [N (default 1000)]
# Everything runs niced on one thread; logs and JSON files go to OUTDIR.
set -eu
OUT=${1:-out/ref_autoattack}
N=${2:-1000}
PY=/usr/bin/python3
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
make -s concord
t() { /usr/bin/time -f "%e s wall" "$@"; }

[ -f "$OUT/lenet5_bp.ckpt" ] || nice ./concord train --model lenet5 --dataset fashion-mnist --rule bp --epochs 3 \
    --seed 0 --threads 1 --out "$OUT/lenet5_bp.ckpt" --no-db --quiet
[ -f "$OUT/lenet5_usf.ckpt" ] || nice ./concord finetune --from "$OUT/lenet5_bp.ckpt" --rule usf --epochs 2 \
    --seed 0 --threads 1 --out "$OUT/lenet5_usf.ckpt" --no-db --quiet

for m in bp usf; do
    ck="$OUT/lenet5_$m.ckpt"
    echo "== $m: reference AutoAttack (standard), Linf, eps 0.1 and 8/255, $N examples"
    t nice $PY scripts/ref_autoattack.py --ckpt "$ck" --eps 0.1,8/255 --n "$N" --seed 0 \
        --json "$OUT/aa_$m.json" 2>&1 | tee "$OUT/aa_$m.log"
    echo "== $m: reference APGD-CE and Square, each alone"
    t nice $PY scripts/ref_autoattack.py --ckpt "$ck" --attack apgd-ce,square --eps 0.1,8/255 --n "$N" --seed 0 \
        --json "$OUT/alone_$m.json" 2>&1 | tee "$OUT/alone_$m.log"
    echo "== $m: Concord PGD-100 x 5 restarts and Square 5000 (p_init 0.8)"
    t nice ./concord attack --ckpt "$ck" --attack pgd --steps 100 --restarts 5 --eps 0.1,8/255 --limit "$N" \
        --threads 1 --no-db 2>&1 | tee "$OUT/concord_pgd_$m.log"
    t nice ./concord attack --ckpt "$ck" --attack square --queries 5000 --p-init 0.8 --eps 0.1,8/255 \
        --limit "$N" --threads 1 --no-db 2>&1 | tee "$OUT/concord_square_$m.log"
done

for m in bp usf; do
    ck="$OUT/lenet5_$m.ckpt"
    echo "== $m: Concord AutoAttack and APGD-CE, compared with the reference"
    t nice ./concord attack --ckpt "$ck" --attack autoattack,apgd-ce --eps 0.1,8/255 --limit "$N" --threads 1 \
        --db "$OUT/concord_aa.db" --quiet 2>&1 | tee "$OUT/concord_aa_$m.log"
    $PY scripts/autoattack_check.py --ref "$OUT/aa_$m.json" --db "$OUT/concord_aa.db" --ckpt "$ck"
done
