#!/bin/sh
# fuzz.sh -- build the libFuzzer targets for the dataset parsers and run each for a bounded time.
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   which targets (default "idx cifar png")
# Crashes are written to tests/fuzz/crash-<target>-*; a crashing input, once fixed, belongs in
# tests/data/regress/<target>-<name> where test dataset_fuzz_regressions replays it.
# The corpus grows in build/fuzz/corpus/<target> (seeded from tests/fuzz/corpus/<target>).
set -e
cd "$(dirname "$0")/.."
sh scripts/deps.sh fuzz
secs="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-idx cifar png}"
out=build/fuzz
mkdir -p "$out"
flags="-std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_DEFAULT_SOURCE"
inc="-I. $(pkg-config --cflags libpng zlib)"
libs="$(pkg-config --libs libpng zlib) -lm"
src="harness/core.c $(ls datasets/*.c)"
status=0
for t in $targets; do
  echo "fuzz.sh: building $t"
  clang $flags $inc -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" $src $libs
  mkdir -p "$out/corpus/$t"
  cp -n tests/fuzz/corpus/"$t"/* "$out/corpus/$t/" 2>/dev/null || true
  echo "fuzz.sh: running $t for ${secs}s"
  dict=""
  [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
  if ! ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 $dict \
       -print_final_stats=1 -artifact_prefix="tests/fuzz/crash-$t-" "$out/corpus/$t" 2>"$out/$t.log"; then
    echo "fuzz.sh: $t FAILED: see $out/$t.log and tests/fuzz/crash-$t-*" >&2
    tail -40 "$out/$t.log" >&2
    status=1
  else
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$out/$t.log" | sed "s/^/fuzz.sh: $t /"
  fi
done
exit $status
