#!/bin/sh
# check_layout.sh -- every #include "..." of a folder points into a folder it may use (README.md, "How the
# code is laid out"): the engine never includes the plug-in tables, results or the command line, nothing
# below the command line includes it, and so on. One line per violation, exit 1 when there is any.
# `make test` runs it (test layout_includes_follow_the_floors).
#   sh scripts/check_layout.sh [ROOT]
# The table: folder, then the folders (or single headers) its files may include besides their own.
# "harness" is the engine's own folder (harness/*.h), not its sub-folders.
set -u
cd "${1:-.}" || exit 2
allowed() {
  case $1 in
    harness/layers) echo "harness" ;;
    harness)        echo "harness/layers datasets" ;;
    datasets)       echo "harness/core.h" ;;
    rules)          echo "harness" ;;
    attacks)        echo "harness datasets" ;;
    results)        echo "harness attacks" ;;
    harness/suite)  echo "harness rules results datasets" ;;
    harness/cli)    echo "harness harness/suite rules attacks datasets results" ;;
  esac
}
out=$(
for dir in harness/layers harness/suite harness/cli harness rules attacks datasets results; do
  set --
  for f in "$dir"/*.c "$dir"/*.h; do [ -f "$f" ] && set -- "$@" "$f"; done
  [ $# -gt 0 ] || continue
  awk -v dir="$dir" -v ok_list="$(allowed "$dir")" '
    BEGIN { n = split(ok_list, ok, " ") }
    /^[ \t]*#[ \t]*include[ \t]*"/ {
      inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*$/, "", inc)
      idir = inc; if (!sub(/\/[^\/]*$/, "", idir)) idir = "."
      if (idir == dir) next
      good = 0
      for (k = 1; k <= n; k++) if (ok[k] == idir || ok[k] == inc) good = 1
      if (!good) printf "%s:%d: includes %s, but %s/ may only use %s\n", FILENAME, FNR, inc, dir, ok_list
    }' "$@"
done)
[ -z "$out" ] && exit 0
printf '%s\n' "$out"
exit 1
