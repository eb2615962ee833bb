#!/usr/bin/env bash
# Loss-weight and n_critic ablation for the DTGAN trainer (issue 3). Trains one short run per
# setting on a project class and prints the best and last validation L1 inside the mask, the last
# training L1 outside it, and the last Wasserstein estimate.
#
#   bench/ablation.sh PROJECT CLASS [STEPS] [extra train flags...]
#
# Example (the README's figures): bench/ablation.sh /tmp/pcb short 300 --size 64 --width 8
set -euo pipefail
project=$1 class=$2 steps=${3:-300}
shift $(( $# >= 3 ? 3 : $# ))
bin=${DTGAN_STUDIO_BIN:-target/release/dtgan-studio}
out=${ABLATION_OUT:-$(mktemp -d)}
mkdir -p "$out"
settings=(
  "baseline|--c-gan 0.01 --c1 1 --c2 5 --n-critic 1"
  "no-gan|--c-gan 0 --c1 1 --c2 5 --n-critic 1"
  "c_gan-0.1|--c-gan 0.1 --c1 1 --c2 5 --n-critic 1"
  "c2-2|--c-gan 0.01 --c1 1 --c2 2 --n-critic 1"
  "c2-20|--c-gan 0.01 --c1 1 --c2 20 --n-critic 1"
  "n_critic-3|--c-gan 0.01 --c1 1 --c2 5 --n-critic 3"
)
printf '%-12s %10s %10s %10s %10s %8s\n' setting val_best val_last l1_out_last wass_last s/step
for s in "${settings[@]}"; do
  name=${s%%|*} flags=${s#*|}
  run="$out/$name"
  # shellcheck disable=SC2086
  "$bin" train --project "$project" --class "$class" --preset cpu --out "$run" --steps "$steps" \
    --checkpoint-every 50 --seed 7 $flags "$@" >"$out/$name.log" 2>&1
  python3 - "$run/metrics.jsonl" "$name" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
val = [r["val_l1_inside"] for r in rows if "val_l1_inside" in r]
last = rows[-1]
print(f'{sys.argv[2]:<12} {min(val):10.3f} {val[-1]:10.3f} {last["l1_outside"]:10.4f} '
      f'{last["wasserstein"]:10.3f} {1/last["it_per_s"]:8.2f}')
PY
done
echo "runs in $out"
