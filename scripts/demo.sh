#!/bin/sh
# demo.sh -- `make demo` (after make built ./concord): run suites/demo.ini into out/demo/, draw the figures
# and write the report (markdown and HTML). Builds nothing. Idempotent: a second run skips every finished job (the
# suite runner asks the results database) and only redraws the figures and the report.
set -eu
cd "$(dirname "$0")/.."
OUT=out/demo
DB=$OUT/concord.db
CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
JOBS=${DEMO_JOBS:-$CORES}
[ -x ./concord ] || { echo "demo.sh: ./concord is missing; run make demo (it builds first)" >&2; exit 1; }
start=$(date +%s)

# 1. the suite: pretrain, fine-tune with every rule, attack (jobs x OpenBLAS threads = cores)
./concord suite run suites/demo.ini --jobs "$JOBS" --out "$OUT" --db "$DB"

# 2. figures (PNG + PDF + re-renderable .gp) and the report (verdict, methods, tables, runs), as markdown and as
#    one self-contained HTML page (figures embedded; opens from disk with no network)
./concord plot --db "$DB" --out "$OUT/figures" --report "$OUT/report.md,$OUT/report.html"

# 3. the verdict on the terminal too
./concord query verdict --db "$DB" --format text || true

end=$(date +%s)
echo
echo "demo finished in $((end - start)) s (suite + figures + report)"
echo "  report:   $OUT/report.md  and  $OUT/report.html (open it in a browser)"
echo "  figures:  $OUT/figures/"
echo "  database: $DB   (try: ./concord query worst --db $DB)"
echo "  logs:     $OUT/logs/   checkpoints: $OUT/ckpt/   plan: $OUT/plan.tsv"
