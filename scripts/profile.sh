#!/bin/sh
# profile.sh -- where one training epoch or PGD-10 of `concord bench` spends its time, by layer kind
# (perf record -e cpu-clock over the whole process). JIT code (oneDNN's convolution and reorder kernels,
# libxsmm's small products) has no symbols here and is one category; "page zeroing" is the kernel clearing
# the huge pages of each pass's workspace on first touch (once per train_run / attack_evaluate call);
# "start-up" is building the synthetic data set and loading libraries. PROFILE_RAW=FILE keeps perf's report.
#
#   sh scripts/profile.sh EXE MODEL train|pgd [N]    N: training samples (train) or PGD images (pgd), 1024 / 256
#
# Prints "share% category" lines, most expensive first. The pgd profile includes a one-batch training run
# (concord bench trains the model it attacks): about 5% of it for the conv nets.
set -eu
EXE=$1; M=$2; WHAT=$3; N=${4:-}
D=$(mktemp -d /tmp/concord-prof.XXXXXX)
trap 'rm -rf "$D"' EXIT
case $WHAT in
  train) N=${N:-1024}; set -- --what train --dataset "synthetic:$N:3x32x32:10" ;;
  pgd)   N=${N:-256};  set -- --what pgd --dataset "synthetic:$N:3x32x32:10" --limit 128 --test-limit "$N" --eps 8/255 --alpha 2/255 ;;
  *) echo "profile.sh: train or pgd" >&2; exit 2 ;;
esac
[ "$M" = lenet5 ] && [ "$WHAT" = train ] && set -- --what train --limit "$N"
[ "$M" = lenet5 ] && [ "$WHAT" = pgd ] && set -- --what pgd --limit 128 --test-limit "$N"
ONEDNN_JIT_PROFILE=1 perf record -q -F 1999 -e cpu-clock -o "$D/perf.data" "$EXE" bench --model "$M" --threads 1 "$@" >&2
# one line per sample, "100 DSO SYM" (perf report's per-symbol rows round JIT code's thousands of
# unnamed addresses to 0.00% each; counting samples does not)
perf script -i "$D/perf.data" -F ip,sym,dso 2>/dev/null | awk 'NF >= 2 {
  d = $NF; for (i = NF - 1; i > 1 && d !~ /^\(/; i--) d = $i " " d
  sub(/^\(/, "", d); sub(/\)$/, "", d); sub(/.*\//, "", d); gsub(/ /, "_", d)
  s = $2; if (s ~ /^\(/) s = "[unknown]"; n++; c[d " " s]++ }
  END { for (k in c) printf("%.4f %s\n", 100 * c[k] / n, k) }' | sort -rn >"$D/report.txt"
[ -z "${PROFILE_RAW:-}" ] || cp "$D/report.txt" "$PROFILE_RAW"
awk '
function cat(dso, s) {
  if (dso ~ /JIT|perf-/) return "JIT code: oneDNN convolutions and reorders, libxsmm products"
  if (dso ~ /kernel/ && s ~ /clear_page|folio_zero|huge|pmd|fault/) return "page zeroing (kernel: first touch of the workspace)"
  if (s ~ /synthetic|rng_|_cos|_sin|ieee754|channel_stats|_dl_|do_lookup|model_finalize|model_create/ || dso ~ /^ld-linux/) return "start-up (synthetic data, model, libraries)"
  if (dso ~ /dnnl/) return "oneDNN, not JIT code (primitive set-up, reference kernels)"
  if (dso ~ /openblas/) return "sgemm (OpenBLAS)"
  if (dso ~ /xsmm/) return "libxsmm (dispatch)"
  if (s ~ /^0x|unknown/) return "code without symbols"
  if (s ~ /bn_/) return "batch-norm"
  if (s ~ /maxpool|avgpool|pool/) return "pooling (+ fused ReLU)"
  if (s ~ /relu/) return "ReLU (unfused)"
  if (s ~ /im2col|col2im/) return "im2col / col2im"
  if (s ~ /add_forward|add_backward|row_add/) return "residual add (+ fused ReLU)"
  if (s ~ /conv_dnnl|conv_/) return "convolution glue (bias, ReLU mask, weight/gradient copies)"
  if (s ~ /layout|block/) return "layout conversions (Concord)"
  if (s ~ /update_range|sgd|adam|train_/) return "optimiser step and trainer"
  if (s ~ /linear|softmax|xent|loss/) return "linear, loss"
  if (s ~ /pgd|attack|clamp/) return "attack step"
  if (s ~ /dropout|rng/) return "dropout"
  if (s ~ /dataset|synthetic|shuffle/) return "data"
  if (s ~ /mem(cpy|set|move)/) return "memcpy / memset"
  if (dso ~ /kernel/) return "kernel, other (page-fault entry in this VM, system calls)"
  return "other"
}
{ p = $1; dso = $2; s = $3; c = cat(dso, s); tot[c] += p }
END { for (c in tot) printf("%5.1f%% %s\n", tot[c], c) }' "$D/report.txt" | sort -rn
