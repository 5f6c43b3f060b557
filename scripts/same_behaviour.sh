#!/bin/sh
# same_behaviour.sh -- fingerprint what a concord binary computes, to show a refactor changed nothing.
#
#   sh scripts/same_behaviour.sh BIN OUTDIR     writes OUTDIR/manifest.txt
#   diff OLD/manifest.txt NEW/manifest.txt      empty diff = bitwise the same behaviour
#
# Trains every architecture (conv nets at width 0.125, tiny synthetic data) with every rule at 1 and 2
# threads, fine-tunes lenet5 with Adam and Nesterov, attacks one model with every attack and gradient
# source, and writes one line per artefact: a hash of every checkpoint tensor and meta value, and of
# every evaluation row's numbers (timings excluded). Also the demo suite's plan.tsv.
# Takes about 2-4 minutes on 2 cores.
set -eu
BIN=$(readlink -f "$1"); OUT=$2
mkdir -p "$OUT"; OUT=$(readlink -f "$OUT")
SUITE=$(readlink -f "$(dirname "$0")/../suites/demo.ini")
cd "$OUT"   # every path below is relative, so manifests of two directories compare
M=manifest.txt; : > "$M"
fp_ckpt() { # name file: hash of every tensor and meta value
    printf '%s tensors %s meta %s\n' "$1" \
      "$(sqlite3 "$2" "select name, shape, hex(data) from tensor order by name" | sha256sum | cut -c1-16)" \
      "$(sqlite3 "$2" "select key, value from meta order by key" | sha256sum | cut -c1-16)" >> "$M"
}
run() { "$BIN" "$@" --no-db --quiet > /dev/null; }
for th in 1 2; do
  for arch in mlp lenet5 alexnet vgg16 resnet18 resnet20; do
    case $arch in
      mlp)        data=synthetic:160:1x28x28:4; extra="--hidden 32,16" ;;
      lenet5)     data=synthetic:160:1x28x28:4; extra="" ;;   # --hidden is mlp's (lenet5 refuses it)
      *)          data=synthetic:96:3x32x32:4;  extra="--width 0.125" ;;
    esac
    for rule in bp fa dfa usf brsf frsf; do
      f=$arch-$rule-t$th.ckpt
      run train --model "$arch" $extra --dataset "$data" --val 32 --epochs 2 --batch 16 --rule "$rule" \
          --lr 0.001 --threads "$th" --probe 8 --out "$f"
      fp_ckpt "$arch-$rule-t$th" "$f"
    done
  done
done
P=lenet5-bp-t1.ckpt
for opt in "--optimizer adam" "--nesterov --wd 1e-4 --schedule cosine"; do
  for rule in bp brsf usf; do
    f=ft-$rule-$(echo "$opt" | cut -c3-6).ckpt
    run finetune --from "$P" --dataset synthetic:160:1x28x28:4 --val 32 --epochs 2 --batch 16 --rule "$rule" \
        --lr 0.001 $opt --threads 1 --out "$f"
    fp_ckpt "$(basename "$f" .ckpt)" "$f"
  done
done
DB=attacks.db; rm -f "$DB"
"$BIN" attack --ckpt ft-brsf-opti.ckpt --attack fgsm,pgd,pgd-l2,square --eps 0,2/255,0.1 \
    --grad true,feedback,transfer:"$P" --transfer-label bp --queries 50 --limit 40 --threads 1 --db "$DB" --quiet > /dev/null
printf 'evals %s\n' "$(sqlite3 "$DB" "select attack, eps, grad_source, n, n_clean_ok, n_robust_ok, n_flipped, n_zero_grad, mean_linf, mean_l2, mean_loss, flags from evals order by id" | sha256sum | cut -c1-16)" >> "$M"
PD=/tmp/concord-same-behaviour-plan   # plans hold absolute paths: always the same one
rm -rf "$PD"; "$BIN" suite plan "$SUITE" --out "$PD" > /dev/null
printf 'demo-plan %s\n' "$(sha256sum < "$PD/plan.tsv" | cut -c1-16)" >> "$M"; rm -rf "$PD"
wc -l < "$M"
