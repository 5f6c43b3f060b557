#!/bin/sh
# fuzz.sh -- build the libFuzzer targets and run each for a bounded time.
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   which targets (default "idx cifar png suite plan ckpt")
# Targets: idx, cifar, png (the dataset parsers, datasets/); suite (the suite reader, planner and plan-time
# option checks), plan (the plan-file reader), ckpt (checkpoint meta and tensors through ckpt_load).
# Crashes are written to tests/fuzz/crash-<target>-*; a crashing input, once fixed, belongs in
# tests/data/regress/<target>-<name>, where a test replays it (dataset_fuzz_regressions for the dataset
# targets, inputs_fuzz_regressions for suite, plan and ckpt; and every target through its own code:
# fuzz_targets_link_and_replay_their_seeds, with the targets make links to tests/fuzz/replay.c).
# The corpus grows in build/fuzz/corpus/<target> (seeded from tests/fuzz/corpus/<target>).
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh fuzz
secs="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-idx cifar png suite plan ckpt}"
out=build/fuzz
mkdir -p "$out"
san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
flags="-std=c11 -g -O1 $san -D_DEFAULT_SOURCE"
inc="-I. $(pkg-config --cflags libpng zlib)"
libs="$(pkg-config --libs libpng zlib) -lm"
src="harness/core.c $(ls datasets/*.c)"
# suite, plan and ckpt reach most of the tree (the planner checks jobs with the command line's own checks;
# a checkpoint becomes a model with its rule): they link the whole library, built once with the
# Makefile's own rule into build/fuzz/lib (instrumented, not linked with libFuzzer's main).
lib_built=""
whole_lib() {
  [ -n "$lib_built" ] && return 0
  objs=$(find harness rules attacks datasets results -name '*.c' ! -path harness/cli/main.c | sort | sed 's|^\(.*\)\.c$|build/fuzz/lib/\1.o|')
  make --no-print-directory -j2 B=build/fuzz/lib CC=clang \
      OPT="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" $objs >/dev/null
  lib_built=$objs
}
status=0
for t in $targets; do
  echo "fuzz.sh: building $t"
  case $t in
    suite|plan|ckpt)
      whole_lib
      # linked as the Makefile links concord (its LDLIBS: oneDNN came after these targets and broke them)
      clang $flags $(make --no-print-directory -s print-cppflags) -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" \
          $lib_built $(make --no-print-directory -s print-ldlibs) ;;
    *)
      clang $flags $inc -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" $src $libs ;;
  esac
  mkdir -p "$out/corpus/$t"
  cp -n tests/fuzz/corpus/"$t"/* "$out/corpus/$t/" 2>/dev/null || true
  echo "fuzz.sh: running $t for ${secs}s"
  dict=""
  [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
  maxlen=65536
  [ "$t" = ckpt ] && maxlen=262144   # small real checkpoints are tens of kB
  if ! ASAN_OPTIONS=detect_leaks=1 OPENBLAS_NUM_THREADS=1 "$out/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 \
       -max_len=$maxlen $dict -print_final_stats=1 -artifact_prefix="tests/fuzz/crash-$t-" "$out/corpus/$t" 2>"$out/$t.log"; then
    echo "fuzz.sh: $t FAILED: see $out/$t.log and tests/fuzz/crash-$t-*" >&2
    tail -40 "$out/$t.log" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$out/$t.log" | sed "s/^/fuzz.sh: $t /"
  fi
done
exit $status
