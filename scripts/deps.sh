#!/bin/sh
# deps.sh -- install the Debian packages Concord needs, only those missing (idempotent, apt-get only).
#   scripts/deps.sh build   : compiler, pkg-config, OpenBLAS, oneDNN (convolutions), libxsmm (small products), libpng, SQLite, zlib, inih, gnuplot, data,
#                             python3 + numpy (the JSON report check, concord import)
#   scripts/deps.sh torch   : + python3-torch (fixtures, benchmark reference, ckpt_to_torch.py)
#   scripts/deps.sh fuzz    : + clang (libFuzzer)
#   scripts/deps.sh slurm   : + slurm-wlm munge
#   scripts/deps.sh browser : + chromium (the HTML report test opens the report in headless Chromium; the test
#                             runs this when chromium is missing and is skipped only when it cannot install)
set -e
want="gcc make pkg-config libopenblas-dev libdnnl-dev libxsmm-dev libpng-dev libsqlite3-dev zlib1g-dev libinih-dev gnuplot-nox dataset-fashion-mnist sqlite3 python3 python3-numpy"
case "${1:-build}" in
  build) ;;
  torch) want="$want python3-torch" ;;
  fuzz)  want="$want clang" ;;
  slurm) want="$want slurm-wlm munge" ;;
  browser) want="$want chromium" ;;
  *) echo "deps.sh: unknown set '$1' (build|torch|fuzz|slurm|browser)" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps.sh: installing missing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps.sh: need root (or sudo) to apt-get install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps.sh: apt-get update failed; install by hand:$missing" >&2; exit 1; }
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || { echo "deps.sh: apt-get install failed for:$missing" >&2; exit 1; }
