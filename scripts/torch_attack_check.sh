#!/bin/sh
# torch_attack_check.sh CKPT [EPS...] -- issue 5 item 9: clean and FGSM robust accuracy of a Concord
# mlp/lenet5 checkpoint on the Fashion-MNIST test set, from `concord attack` and from the independent
# PyTorch implementation scripts/torch_attack_check.py; fails unless both agree within 0.5 points.
# Environment: CONCORD (default ./concord), PYTHON (default /usr/bin/python3), LIMIT (0 = all 10000).
set -eu
CKPT=${1:?usage: torch_attack_check.sh CKPT [EPS...]}
shift
[ $# -gt 0 ] || set -- 0 2/255 8/255 0.1
CONCORD=${CONCORD:-./concord}
PYTHON=${PYTHON:-/usr/bin/python3}
LIMIT=${LIMIT:-0}
status=0
for eps in "$@"; do
    c=$(OPENBLAS_NUM_THREADS=1 "$CONCORD" attack --ckpt "$CKPT" --attack fgsm --eps "$eps" --dataset fashion-mnist \
        --limit "$LIMIT" --no-db | grep ' fgsm ')
    t=$("$PYTHON" "$(dirname "$0")/torch_attack_check.py" "$CKPT" --eps "$eps" --limit "$LIMIT")
    cc=$(echo "$c" | sed 's/.*clean *\([0-9.]*\)%.*/\1/')
    cr=$(echo "$c" | sed 's/.*robust *\([0-9.]*\)%.*/\1/')
    tc=$(echo "$t" | sed 's/.*clean \([0-9.]*\)%.*/\1/')
    tr=$(echo "$t" | sed 's/.*robust \([0-9.]*\)%.*/\1/')
    verdict=$(awk -v a="$cc" -v b="$tc" -v c="$cr" -v d="$tr" 'BEGIN {
        dc = a - b; if (dc < 0) dc = -dc; dr = c - d; if (dr < 0) dr = -dr;
        printf "%s clean diff %.2f, robust diff %.2f points", (dc <= 0.5 && dr <= 0.5) ? "AGREE" : "DISAGREE", dc, dr }')
    echo "eps $eps: concord clean $cc% robust $cr% | torch clean $tc% robust $tr% | $verdict"
    case $verdict in AGREE*) ;; *) status=1 ;; esac
done
exit $status
