#!/usr/bin/env bash
# Runs the whole test suite. On a bare Debian/Ubuntu machine it first installs what the
# real-window smoke test needs (Xvfb and Mesa's software OpenGL), when it can (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb xauth)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || need+=(libgl1 libgl1-mesa-dri libegl1)
ldconfig -p 2>/dev/null | grep -q 'libxkbcommon-x11.so.0' || need+=(libxkbcommon-x11-0)
ldconfig -p 2>/dev/null | grep -q 'libXcursor.so.1' || need+=(libxcursor1 libxrandr2 libxi6)
if ((${#need[@]})) && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing for the window smoke test: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo test --release --all-targets "$@"
