#!/usr/bin/env bash
# Builds the CUDA binary (`--features cuda`, candle's CUDA backend) on a machine without a GPU
# or a system CUDA toolkit, from PyPI's CUDA 13 wheels:
#
#   scripts/build-cuda.sh            # binary: target-cuda/release/dtgan-studio
#
# Environment: CUDA_VENV (where the toolkit wheels go; default ~/.cache/dtgan-studio/cuda13),
# CUDA_COMPUTE_CAP (default 90: H100/H200), CARGO_TARGET_DIR (default target-cuda, so CPU builds
# in target/ are not invalidated). A clean build takes about 15 minutes on 2 cores.
#
# Running the binary needs the NVIDIA driver (libcuda.so.1) and cuBLAS, cuBLASLt, cuRAND and
# NVRTC 13 on the loader path, because candle-core 0.11 links cudarc with `dynamic-linking`
# (it cannot start where they are missing; the default CPU build has no such requirement).
# On the lent GPU machines the PyTorch cu130 wheels carry these libraries:
#   export LD_LIBRARY_PATH=$(python3 -c 'import nvidia,os;print(os.path.join(nvidia.__path__[0],"cu13","lib"))'):$LD_LIBRARY_PATH
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CUDA_VENV:-$HOME/.cache/dtgan-studio/cuda13}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "cuda-toolkit[nvcc,nvvm,crt,cudart,cublas,curand,nvrtc,cccl]==13.0.2"
cu=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[ -x "$cu/bin/nvcc" ] || { echo "error: no nvcc under $cu" >&2; exit 1; }

export CUDA_HOME=$cu CUDA_PATH=$cu CUDA_ROOT=$cu
export PATH="$cu/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}

# What the linker is asked for but the wheels lack under those names:
# - libcudart.so: a GNU ld script naming the static runtime and what it needs;
# - libcublas.so & co.: the wheels ship only versioned names;
# - libcuda.so: the driver library, absent without a driver. A stub with the driver API's
#   symbols (taken from cudarc's bindings) and the real soname lets the binary link; at run
#   time the loader finds the driver's own libcuda.so.1.
link="$CARGO_TARGET_DIR/cuda-link"
mkdir -p "$link"
for lib in "$cu"/lib/lib*.so.*; do
    base=$(basename "$lib")
    ln -sf "$lib" "$link/${base%%.so.*}.so"
done
rm -f "$link/libcudart.so"
printf 'INPUT(%s/lib/libcudart_static.a -ldl -lpthread -lrt)\n' "$cu" >"$link/libcudart.so"
cudarc=$(cargo metadata --features cuda --format-version 1 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
grep -ohE 'fn cu[A-Za-z0-9_]+\(' "$(dirname "$cudarc")/src/driver/sys/mod.rs" | sort -u |
    sed -E 's/fn (cu[A-Za-z0-9_]+)\(/void \1(void) {}/' >"$link/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"

export RUSTFLAGS="${RUSTFLAGS:-} -L native=$(realpath "$link") -L native=$cu/lib"
cargo build --release --features cuda
echo "built $CARGO_TARGET_DIR/release/dtgan-studio"
