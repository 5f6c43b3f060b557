#!/bin/sh
# bench.sh -- `make bench`: Concord and the PyTorch reference on the same work, in one run, one table.
#
#   training samples/s (Fashion-MNIST, 60k, 1 epoch, SGD lr 0.01 momentum 0.9, batch 128) for mlp and
#   lenet5; PGD-10 images/s (10k test images, eps 0.1, alpha 0.01 on both sides, random start, batch
#   128); resnet20 (width 1) training on 32x32 synthetic data (Concord only); at 1 and 2 threads;
#   GFLOP/s as a share of the sgemm peak measured in this run; peak resident memory; and "bg", the
#   CPUs other processes used meanwhile (> ~0.1: the figure is contaminated, rerun on a quiet machine);
#   and the sgemm-only ceiling (concord bench --what ceiling): the speed if nothing but sgemm cost time.
#
# Environment: CONCORD_EXE (./concord), BENCH_THREADS ("1 2"), BENCH_REPEATS (1; medians over repeats), BENCH_RESNET_N (2560),
#   BENCH_WAIT (seconds to wait for the machine to go quiet before each measurement, 60).
# The reference's 2-thread figure uses the OpenMP OpenBLAS build when it is installed
# (libopenblas0-openmp; with the pthread build torch's OpenMP pool and OpenBLAS fight over the cores);
# the table says which build it used.
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
EXE=${CONCORD_EXE:-./concord}
THREADS=${BENCH_THREADS:-1 2}
R=${BENCH_REPEATS:-1}
RN=${BENCH_RESNET_N:-2560}
WAIT=${BENCH_WAIT:-60}
OUT=$(mktemp -d /tmp/concord-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

REF="$(dirname "$REPO")/shared/reference/torch_ref.py"
[ -f "$REF" ] || REF="$REPO/../shared/reference/torch_ref.py"
OMPLIB=/usr/lib/x86_64-linux-gnu/openblas-openmp

if ! "$EXE" bench --help >/dev/null 2>&1; then
  echo "bench.sh: $EXE has no 'bench' command (harness/cli/main.c needs {\"bench\", cmd_bench, ...} in its table)" >&2
  exit 1
fi

have_torch=1
if ! /usr/bin/python3 -c "import torch, numpy" >/dev/null 2>&1; then
  sh scripts/deps.sh torch || true
  /usr/bin/python3 -c "import torch, numpy" >/dev/null 2>&1 || have_torch=0
fi
[ -f "$REF" ] || have_torch=0
[ $have_torch = 1 ] || echo "bench.sh: PyTorch reference unavailable (python3-torch or $REF missing): Concord's figures only" >&2

# wait until other processes use < 0.2 CPUs over 2 s, at most $WAIT seconds
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
wait_quiet() {
  t=0
  while [ "$t" -lt "$WAIT" ]; do
    a=$(busy); sleep 2; b=$(busy)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN{exit !((b-a)/hz/2 < 0.2)}' && return 0
    t=$((t + 2))
  done
}

echo "bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), repeats $R, results in $OUT" >&2
for T in $THREADS; do
  wait_quiet
  "$EXE" bench --what sgemm --threads "$T" | tee -a "$OUT/concord.txt" >&2
  for M in mlp lenet5; do
    wait_quiet
    "$EXE" bench --what all --model "$M" --threads "$T" --repeats "$R" | tee -a "$OUT/concord.txt" >&2
    "$EXE" bench --what ceiling --model "$M" --threads "$T" | tee -a "$OUT/concord.txt" >&2
  done
  wait_quiet
  "$EXE" bench --what train --model resnet20 --dataset "synthetic:$RN:3x32x32:10" --threads "$T" --repeats "$R" \
    | tee -a "$OUT/concord.txt" >&2
  if [ $have_torch = 1 ]; then
    for M in mlp lenet; do
      wait_quiet
      if [ "$T" -gt 1 ] && [ -d "$OMPLIB" ]; then
        LD_LIBRARY_PATH=$OMPLIB /usr/bin/python3 "$REF" --model $M --threads "$T" --repeats "$R" --alpha 0.01 \
          --tag omp --json "$OUT/torch.jsonl" >&2
      else
        /usr/bin/python3 "$REF" --model $M --threads "$T" --repeats "$R" --alpha 0.01 --json "$OUT/torch.jsonl" >&2
      fi
    done
  fi
done

# torch rows -> "torch model threads train_sps pgd_ips train_gflops pgd_gflops maxrss bg_train bg_pgd tag" (medians)
if [ -f "$OUT/torch.jsonl" ]; then
  /usr/bin/python3 - "$OUT/torch.jsonl" >"$OUT/torch.txt" <<'EOF'
import json, statistics as st, sys
g = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    g.setdefault((r["model"], r["threads"]), []).append(r)
for (m, t), rs in g.items():
    med = lambda k: st.median(r[k] for r in rs)
    print("torch", "lenet5" if m == "lenet" else m, t, med("train_sps"), med("pgd_ips"), med("train_gflops"),
          med("pgd_gflops"), max(r["maxrss_end_mib"] for r in rs), max(r["train_bg"] for r in rs),
          max(r["pgd_bg"] for r in rs), "openmp-OpenBLAS" if rs[0]["ld_library_path"] else "pthread-OpenBLAS",
          st.median(60000 * r["epochs"] / r["train_cpu_s"] for r in rs))
EOF
fi
touch "$OUT/torch.txt"

cat "$OUT/concord.txt" "$OUT/torch.txt" | awk '
function kv(s, k,   i, a, n) { n = split(s, a, " "); for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2); return "" }
function rat(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2fx", a / b) : "-" }
function pct(g, t) { return (g != "" && peak[t] > 0) ? sprintf("%.0f%%", 100 * g / peak[t]) : "-" }
function val(x, f) { return x == "" ? "-" : sprintf(f, x) }
$1 == "bench" && kv($0, "what") == "sgemm" { peak[kv($0, "threads")] = kv($0, "gflops"); T[kv($0, "threads")] = 1 }
$1 == "bench" && kv($0, "what") == "train" { k = kv($0, "model") SUBSEP kv($0, "threads"); tr[k] = kv($0, "samples_per_s"); tg[k] = kv($0, "gflops"); tb[k] = kv($0, "bg"); rss[k] = kv($0, "maxrss_mib"); tc[k] = kv($0, "n") / kv($0, "cpu_s") }
$1 == "bench" && kv($0, "what") == "pgd" { k = kv($0, "model") SUBSEP kv($0, "threads"); pg[k] = kv($0, "images_per_s"); pgg[k] = kv($0, "gflops"); pb[k] = kv($0, "bg"); rss[k] = kv($0, "maxrss_mib") }
$1 == "bench" && kv($0, "what") == "ceiling" { k = kv($0, "model") SUBSEP kv($0, "threads"); ct[k] = kv($0, "train_samples_per_s"); cp[k] = kv($0, "pgd_images_per_s"); cg[k] = kv($0, "train_gflops") }
$1 == "torch" { k = $2 SUBSEP $3; ttr[k] = $4; tpg[k] = $5; ttg[k] = $6; tpgg[k] = $7; trss[k] = $8; ttb[k] = $9; tpb[k] = $10; tlib[$3] = $11; ttc[k] = $12 }
END {
  print ""
  print "| threads | work | Concord | PyTorch 1.13 | Concord / PyTorch | Concord GFLOP/s (% of sgemm peak) | PyTorch GFLOP/s (% of peak) | peak RSS MiB Concord / PyTorch | bg CPUs Concord / PyTorch |"
  print "|---|---|---|---|---|---|---|---|---|"
  for (t = 1; t <= 64; t++) {
    if (!(t in T)) continue
    printf("| %d | sgemm peak (n = 512..2048, best) | %.1f GFLOP/s | | | | | | |\n", t, peak[t])
    split("mlp lenet5", ms, " ")
    for (i = 1; i <= 2; i++) {
      m = ms[i]; k = m SUBSEP t
      printf("| %d | %s training, samples/s | %s | %s | %s | %s (%s) | %s (%s) | %s / %s | %s / %s |\n", t, m, val(tr[k], "%.0f"), val(ttr[k], "%.0f"),
             rat(tr[k], ttr[k]), val(tg[k], "%.1f"), pct(tg[k], t), val(ttg[k], "%.1f"), pct(ttg[k], t), val(rss[k], "%.0f"), val(trss[k], "%.0f"), val(tb[k], "%.2f"), val(ttb[k], "%.2f"))
      printf("| %d | %s training, samples per CPU-second (robust to time-slicing by other processes) | %s | %s | %s | | | | |\n", t, m,
             val(tc[k], "%.0f"), val(ttc[k], "%.0f"), rat(tc[k], ttc[k]))
      printf("| %d | %s PGD-10, images/s | %s | %s | %s | %s (%s) | %s (%s) | | %s / %s |\n", t, m, val(pg[k], "%.0f"), val(tpg[k], "%.0f"),
             rat(pg[k], tpg[k]), val(pgg[k], "%.1f"), pct(pgg[k], t), val(tpgg[k], "%.1f"), pct(tpgg[k], t), val(pb[k], "%.2f"), val(tpb[k], "%.2f"))
    }
    for (i = 1; i <= 2; i++) {
      m = ms[i]; k = m SUBSEP t
      printf("| %d | %s sgemm-only ceiling (its products timed alone): training samples/s, PGD-10 images/s | %s, %s | | | %s (%s) | | | |\n", t, m,
             val(ct[k], "%.0f"), val(cp[k], "%.0f"), val(cg[k], "%.1f"), pct(cg[k], t))
    }
    k = "resnet20" SUBSEP t
    printf("| %d | resnet20 training (32x32 synthetic), samples/s | %s | n/a | | %s (%s) | | %s / - | %s / - |\n", t, val(tr[k], "%.0f"), val(tg[k], "%.1f"), pct(tg[k], t), val(rss[k], "%.0f"), val(tb[k], "%.2f"))
  }
  for (t = 2; t <= 64; t++) if ((t in T) && (1 in T)) {
    printf("\nscaling %d threads / 1 thread: Concord mlp %s, lenet5 %s, resnet20 %s; PyTorch (%s) mlp %s, lenet5 %s\n", t,
           rat(tr["mlp" SUBSEP t], tr["mlp" SUBSEP 1]), rat(tr["lenet5" SUBSEP t], tr["lenet5" SUBSEP 1]), rat(tr["resnet20" SUBSEP t], tr["resnet20" SUBSEP 1]),
           (t in tlib) ? tlib[t] : "-", rat(ttr["mlp" SUBSEP t], ttr["mlp" SUBSEP 1]), rat(ttr["lenet5" SUBSEP t], ttr["lenet5" SUBSEP 1]))
  }
}'
