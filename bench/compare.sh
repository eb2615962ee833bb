#!/usr/bin/env bash
# Side-by-side training-step speed: this project's CPU kernel, candle's built-in conv, and
# PyTorch (bench/torch_nets.py), run back to back in alternating rounds on the same machine.
#
#   bench/compare.sh [ROUNDS] [PYTHON]        # PYTHON: an interpreter with torch installed
#   DEVICE=cuda DTGAN_STUDIO_BIN=target-cuda/release/dtgan-studio bench/compare.sh
#                                             # the CUDA build against PyTorch on the GPU
#   BEFORE=/path/to/older/dtgan-studio bench/compare.sh 8 PYTHON
#                                             # adds an older build ("before", fast kernel)
#   CONFIGS="generator 256 1" bench/compare.sh  # only these nets (';'-separated)
#
# Prints, per configuration, the median over rounds of each contender's median step time.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
py=${2:-python3}
bin=${DTGAN_STUDIO_BIN:-target/release/dtgan-studio}
threads=${THREADS:-2}
device=${DEVICE:-cpu}
if [ "$device" = cpu ]; then kernels=(fast candle); else kernels=(cuda); fi
IFS=';' read -r -a configs <<<"${CONFIGS:-generator 256 1;generator 128 4;critic 256 1;critic 128 4}"
before=${BEFORE:-}
out=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
    for c in "${configs[@]}"; do
        read -r net size batch <<<"$c"
        args=(--net "$net" --size "$size" --batch "$batch" --steps 5 --json)
        if [ -n "$before" ] && [ "$device" = cpu ]; then
            RAYON_NUM_THREADS=$threads "$before" bench "${args[@]}" --kernel fast |
                python3 -c 'import json,sys; r=json.load(sys.stdin); r["kernel"]="before"; print(json.dumps(r))' >>"$out"
        fi
        for kernel in "${kernels[@]}"; do
            if [ "$kernel" = cuda ]; then
                "$bin" bench "${args[@]}" --device cuda >>"$out"
            else
                RAYON_NUM_THREADS=$threads "$bin" bench "${args[@]}" --kernel "$kernel" >>"$out"
            fi
        done
        "$py" bench/torch_nets.py "${args[@]}" --threads "$threads" --device "$device" >>"$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["net"], r["size"], r["batch"], r["kernel"])].append(r)
print(f"{'net':<10} {'size':>4} {'batch':>5} {'contender':<8} {'step s':>7} {'fwd s':>7} {'fwd GFLOP/s':>11} {'vs torch':>8}")
for (net, size, batch, kernel), rs in sorted(runs.items()):
    step = statistics.median(r["step_seconds"] for r in rs)
    fwd = statistics.median(r["forward_seconds"] for r in rs)
    torch = statistics.median(r["step_seconds"] for r in runs[(net, size, batch, "pytorch")])
    print(f"{net:<10} {size:>4} {batch:>5} {kernel:<8} {step:7.3f} {fwd:7.3f} "
          f"{rs[0]['forward_gflop'] / fwd:11.1f} {step / torch:8.2f}x")
PY
rm -f "$out"
