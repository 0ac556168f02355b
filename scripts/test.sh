#!/usr/bin/env bash
# Install the test requirements (system packages for a virtual display included) and run the tests.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v xvfb-run >/dev/null 2>&1 || need_apt+=(xvfb xauth)
ldconfig -p 2>/dev/null | grep -q libEGL.so.1 || need_apt+=(libegl1)
ldconfig -p 2>/dev/null | grep -q libGL.so.1 || need_apt+=(libgl1 libgl1-mesa-dri)
ldconfig -p 2>/dev/null | grep -q libxkbcommon-x11 || need_apt+=(libxkbcommon-x11-0)
# Qt's xcb platform plugin: check each library (machines differ in which of them they already carry)
for pair in icccm:libxcb-icccm4 image:libxcb-image0 keysyms:libxcb-keysyms1 randr:libxcb-randr0 \
            render-util:libxcb-render-util0 xinerama:libxcb-xinerama0 xfixes:libxcb-xfixes0 \
            shape:libxcb-shape0 cursor:libxcb-cursor0 xkb:libxcb-xkb1; do
    ldconfig -p 2>/dev/null | grep -q "libxcb-${pair%%:*}\.so" || need_apt+=("${pair#*:}")
done
ldconfig -p 2>/dev/null | grep -q libfontconfig || need_apt+=(libfontconfig1)
ldconfig -p 2>/dev/null | grep -q libdbus-1 || need_apt+=(libdbus-1-3)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libgl1-mesa-dri "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# torch pinned to the CPU build these machines carry (an unpinned torch pulls GBs of CUDA wheels)
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[testing]"

export NAPARI_FAST_STYLE_SHARED="${NAPARI_FAST_STYLE_SHARED:-$(cd .. && pwd)/shared}"
exec xvfb-run -a -s "-screen 0 1280x1024x24" $PY -m pytest -q -p no:cacheprovider "$@"
