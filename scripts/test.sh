#!/usr/bin/env bash
# The README's test command: install the project with its test and neural extras, then run the tests.
# Usage (fresh machine): bash scripts/test.sh   -- creates .venv unless a venv is already active.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VENV_READY:-}" ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
# A CPU build of torch first: on these machines this pin resolves to a local CPU wheel, and an
# unpinned torch would pull several GB of CUDA packages.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,neural,train,ray,export,assets]"
# The Khronos glTF validator (npm) used by the export tests.
npm install --silent --no-audit --no-fund --prefix .cache/node gltf-validator@2.0.0-dev.3.10 >/dev/null
if [ -n "${STEP1X3D_INSTALL_ONLY:-}" ]; then
  exit 0  # .ci/run installs first, runs the quick start again, then the tests
fi
# The suite without the tests marked slow (fresh venvs, Ray clusters, torchrun, large uploads), which
# must stay under 10 minutes on 2 cores; the 20 slowest tests are printed at the end. The slow ones:
# bash scripts/test.sh -m slow (CI runs both), everything: bash scripts/test.sh -m "slow or not slow".
python -m pytest -q -p no:cacheprovider --durations=20 -m "not slow" "$@"
