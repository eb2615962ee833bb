#!/usr/bin/env bash
# Runs the whole test suite. On a bare Debian/Ubuntu machine it first installs what the
# real-window smoke test needs (Xvfb and Mesa's software OpenGL), when it can (root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(xvfb libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libegl-mesa0 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6)
need=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
    done
fi
if ((${#need[@]})) && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing for the window smoke test: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo test --release --all-targets "$@"
