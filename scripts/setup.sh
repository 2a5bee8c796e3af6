#!/usr/bin/env bash
# Create .venv and install motionkit with everything its tests need. Safe to rerun (fast when done).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c scripts/constraints-cpu.txt)
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[test]"
# PySceneDetect requires the GUI build of OpenCV, which would shadow opencv-python-headless: install it alone.
"${pip[@]}" --no-deps "scenedetect>=0.6"
# DeepSpeed ships only a source archive whose build imports torch: build it against the CPU torch above, not
# in an isolated environment that would fetch a CUDA torch. ZeRO's tests run its CPU engine.
"${pip[@]}" --no-build-isolation "deepspeed==0.19.8"
.venv/bin/python -m pip uninstall --quiet --yes opencv-python 2>/dev/null || true
"${pip[@]}" --force-reinstall --no-deps "opencv-python-headless>=4.8"
# The app's browser test drives Debian's Chromium (never a browser downloaded by a test tool).
if [ ! -x "${MOTIONKIT_CHROMIUM:-/usr/bin/chromium}" ] && command -v apt-get >/dev/null; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    if [ -z "$sudo" ] || sudo -n true 2>/dev/null; then
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
            || echo "setup: could not install chromium; the browser test will be skipped" >&2
    else
        echo "setup: install chromium (apt-get install chromium) to run the app's browser test" >&2
    fi
fi
