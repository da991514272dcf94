#!/usr/bin/env bash
# Create .venv/ with torch, a python-only detectron2 built from PyPI, and blendmask (editable).
#
# Idempotent: a second run checks what is there and installs nothing new.
# A detectron2 already importable in the venv (compiled, or python-only such as a build of its main
# branch) is kept and named in the log, unless BLENDMASK_REPLACE_DETECTRON2=1.
# Environment: PYTHON (default python3.11), VENV (default .venv), CACHE_DIR (default .cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-$ROOT/.venv}"
CACHE_DIR="${CACHE_DIR:-$ROOT/.cache}"
WHEEL_DIR="$CACHE_DIR/wheels"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
D2_SDIST_REQ="pb1-detectron2==0.6 --hash=sha256:5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
# Pins detectron2 v0.6 needs on a modern stack (Pillow 10 removed Image.LINEAR, which 0.6 uses).
D2_06_PINS=("Pillow<10" "setuptools>=77.0.3,<82")
# Runtime packages installed whichever detectron2 is kept: the package's own requirements (setup.py's
# INSTALL_REQUIRES, which the editable install below brings too) at the versions this repo tests, and shapely
# for detectron2's cityscapes loader.
RUNTIME_PINS=("numpy>=2,<3" "opencv-python-headless<5" shapely)
STAMP="$VENV/.blendmask-setup"
SETUP_HASH="$(cat "$0" setup.py requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)"

log() { echo "[setup] $*"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SETUP_HASH" && "${BLENDMASK_REPLACE_DETECTRON2:-0}" != "1" ]] \
    && "$PY" -c "import torch, detectron2, blendmask" 2>/dev/null; then
  log "environment up to date: $VENV (delete $STAMP to force a re-check)"
  exit 0
fi
start=$(date +%s)

if [[ ! -x "$PY" ]]; then
  log "creating virtualenv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

if ! "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')))" 2>/dev/null; then
  log "installing ${TORCH_PINS[*]} (local wheel store)"
  "${PIP[@]}" install "${TORCH_PINS[@]}" "setuptools>=77.0.3,<82" wheel
fi

# What detectron2 is there: "missing...", or "<compiled|python-only> <version> <folder>".
d2_state="$("$PY" "$ROOT/tools/detectron2_pyonly/which_detectron2.py" 2>/dev/null)" || d2_state="missing"

if [[ "$d2_state" != missing* && "${BLENDMASK_REPLACE_DETECTRON2:-0}" != "1" ]]; then
  read -r d2_kind d2_version d2_path <<< "$d2_state"
  log "keeping the installed $d2_kind detectron2 $d2_version ($d2_path); set BLENDMASK_REPLACE_DETECTRON2=1 to replace it with the python-only 0.6 build"
  pins=("${RUNTIME_PINS[@]}")
  [[ "$d2_version" == 0.6* ]] && pins+=("${D2_06_PINS[@]}")
  log "installing the runtime packages beside it: ${pins[*]}"
  "${PIP[@]}" install "${pins[@]}"
else
  [[ "$d2_state" != missing* ]] && log "replacing the installed detectron2 ($d2_state): BLENDMASK_REPLACE_DETECTRON2=1"
  wheel="$(ls "$WHEEL_DIR"/detectron2-0.6+pyonly-*.whl 2>/dev/null | head -n1 || true)"
  if [[ -z "$wheel" ]]; then
    log "building a python-only detectron2 0.6 wheel from the hash-pinned pb1-detectron2 sdist"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "$D2_SDIST_REQ" > "$work/req.txt"
    "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation --require-hashes \
      -r "$work/req.txt" -d "$work"
    tar -xzf "$work"/pb1-detectron2-0.6.tar.gz -C "$work"
    src="$work/pb1-detectron2-0.6"
    "$PY" "$ROOT/tools/detectron2_pyonly/patch_sdist.py" "$src"
    mkdir -p "$WHEEL_DIR"
    (cd "$src" && D2_VERSION_SUFFIX=+pyonly "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$WHEEL_DIR" .)
    wheel="$(ls "$WHEEL_DIR"/detectron2-0.6+pyonly-*.whl | head -n1)"
  fi
  log "installing $(basename "$wheel")"
  "${PIP[@]}" install "$wheel" "${RUNTIME_PINS[@]}" "${D2_06_PINS[@]}"
fi

log "installing blendmask (editable, with its requirements from setup.py) and the dev tools"
"${PIP[@]}" install --no-build-isolation -e "$ROOT" -r "$ROOT/requirements-dev.txt"

# panopticapi (PQ for COCOPanopticEvaluator) is on PyPI only inside panopticapi-lite, which pins numpy<2 and
# Pillow>=10; the package itself runs on our numpy 2 and Pillow 9, so it is installed without its dependencies.
PANOPTICAPI_REQ="panopticapi-lite==0.2.0"
if ! "$PY" -c "import panopticapi.evaluation" 2>/dev/null; then
  log "installing $PANOPTICAPI_REQ (the panopticapi package) without its dependencies"
  "${PIP[@]}" install --no-deps "$PANOPTICAPI_REQ"
fi

"$PY" -c "import blendmask, detectron2, os; print('[setup] using detectron2', detectron2.__version__, 'from', os.path.dirname(detectron2.__file__), '| blendmask', blendmask.__version__)"
echo "$SETUP_HASH" > "$STAMP"
log "done in $(( $(date +%s) - start ))s: activate with 'source $VENV/bin/activate'"
