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
.venv/bin/python -m pip uninstall --quiet --yes opencv-python 2>/dev/null || true
"${pip[@]}" --force-reinstall --no-deps "opencv-python-headless>=4.8"
