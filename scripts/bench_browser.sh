#!/usr/bin/env bash
# Dataset-browser benchmark on a project of 10,000 images, in a real window (Xvfb when there is no
# display): time from start to the first thumbnails, frame times while scrolling continuously,
# and peak memory (maximum resident set size of the whole process).
#
#   scripts/bench_browser.sh [PROJECT_DIR] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/dtgan-bench-10k}
secs=${2:-20}
cargo build --release --quiet
bin=target/release/dtgan-studio
if [ ! -f "$dir/studio.json" ]; then
    # 2 products x 4,976 good + 2 x 4 classes x 3 defects x (defect + twin) = 10,000 images.
    start=$(date +%s%N)
    "$bin" demo --out "$dir" --seed 1 --good-per-group 4976 --defects-per-class 3
    echo "made $dir in $(( ($(date +%s%N) - start) / 1000000 )) ms"
fi
"$bin" info --project "$dir"
home=$(mktemp -d)
run=(env DTGAN_STUDIO_BENCH_SCROLL="$secs" DTGAN_STUDIO_HOME="$home" "$bin" open "$dir")
if [ -z "${DISPLAY:-}" ]; then
    run=(xvfb-run -a -s "-screen 0 1400x900x24" "${run[@]}")
fi
/usr/bin/time -v "${run[@]}" 2>"$home/time.log"
grep -E "Maximum resident set size|Elapsed|Percent of CPU" "$home/time.log"
