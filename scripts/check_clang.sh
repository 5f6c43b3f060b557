#!/bin/sh
# check_clang.sh -- every source of the program compiles with clang as well as with gcc. `make fuzz` builds
# the whole library with clang (its suite, plan and ckpt targets link it), so a GCC-only extension breaks
# fuzzing without breaking `make`: __builtin_shuffle in harness/layers/pool.c did, from aaa0202 until the
# fifteenth performance round found it. `make test` runs this (test sources_compile_with_clang).
#   sh scripts/check_clang.sh [FILE.c ...]   default: every .c of harness rules attacks datasets results
# Parse and type-check only (-fsyntax-only, no objects), two files at a time; clang's warnings are off
# (gcc's are the project's), its errors are printed. Exit 0: all compile; 1: some do not; 2: no clang.
set -u
cd "$(dirname "$0")/.." || exit 2
command -v clang >/dev/null 2>&1 || { echo "check_clang.sh: clang is not installed (sh scripts/deps.sh fuzz)" >&2; exit 2; }
if [ $# -eq 0 ]; then
  set -- $(find harness rules attacks datasets results -name '*.c' | sort)
fi
flags="-fsyntax-only -w -std=c11 -Werror=implicit-function-declaration $(make --no-print-directory -s print-cppflags)"
out=$(printf '%s\n' "$@" | xargs -P 2 -n 4 clang $flags 2>&1)
rc=$?
[ -n "$out" ] && printf '%s\n' "$out"
[ $rc -eq 0 ] && [ -z "$out" ] && exit 0
exit 1
