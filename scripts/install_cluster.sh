#!/usr/bin/env bash
# Build the Python environment for CamI2V Studio on a CUDA GPU cluster, once.
#
#   bash scripts/install_cluster.sh                      # on a login node (needs internet)
#   MODULES="2023 Python/3.11.3-GCCcore-12.3.0" bash scripts/install_cluster.sh
#
# cami2v.job calls it by itself when the environment is missing. It installs, always with the
# constraints file (so no package can swap torch for another build):
#   1. torch 2.13.0 + torchvision 0.28.0 (PyPI's default Linux wheels are the CUDA 13.0 build;
#      they need an NVIDIA driver R580 or newer; for older drivers set TORCH_INDEX_URL to
#      PyTorch's cu12x wheel index, e.g. https://download.pytorch.org/whl/cu126)
#   2. requirements.txt (the CPU-safe core)
#   3. the GPU extras: requirements-gpu.txt when present, else bitsandbytes and pycolmap
#      at the versions checked against torch 2.13
#   optional: WITH_AWQ=1 adds gptqmodel 7.6.0 (the AWQ captioner; pins numpy 2.2.6, ~600 MB),
#             WITH_XFORMERS=1 adds xformers 0.0.35 (never needed: attention uses PyTorch SDPA).
# This is for GPU nodes only: torchvision breaks a CPU-only environment.
#
# Settings: CAMI2V_VENV (default <repo>/.venv), PYTHON (default python3.11, else python3),
# MODULES (environment modules to load first), TORCH_INDEX_URL, WITH_AWQ, WITH_XFORMERS,
# DRY_RUN=1 (print the commands instead of running them).

set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CAMI2V_VENV="${CAMI2V_VENV:-$REPO_DIR/.venv}"
TORCH_VERSION="2.13.0"
TORCHVISION_VERSION="0.28.0"
GPU_EXTRAS=(bitsandbytes==0.50.2 pycolmap==4.2.1)

run() {
  if [ "${DRY_RUN:-0}" != "0" ]; then
    echo "+ $*"
  else
    "$@"
  fi
}

cd "$REPO_DIR"
for f in requirements.txt constraints.txt; do
  if [ ! -f "$f" ]; then
    echo "error: $REPO_DIR/$f is missing; run this script from a full clone of the repository." >&2
    exit 2
  fi
done
if ! grep -qx "torch==$TORCH_VERSION" constraints.txt; then
  echo "error: constraints.txt does not pin torch==$TORCH_VERSION; update TORCH_VERSION in $0 to match." >&2
  exit 2
fi

if [ -n "${MODULES:-}" ] && command -v module >/dev/null 2>&1; then
  # shellcheck disable=SC2086  # a space-separated list of module names
  module load $MODULES
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
if [ -z "$PYTHON" ]; then
  echo "error: no python3.11 or python3 found; load a Python module (MODULES=...) or set PYTHON." >&2
  exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: $PYTHON is older than Python 3.10; load a newer Python module (MODULES=...) or set PYTHON." >&2
  exit 2
fi

# Keep pip's and the hub's caches in the user's home, not a shared node's /tmp.
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
export HF_HOME="${HF_HOME:-$HOME/.cache/huggingface}"

echo "Building $CAMI2V_VENV with $PYTHON"
if [ ! -x "$CAMI2V_VENV/bin/python" ]; then
  run "$PYTHON" -m venv "$CAMI2V_VENV"
fi
PIP=("$CAMI2V_VENV/bin/python" -m pip install --disable-pip-version-check)

torch_index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  torch_index=(--index-url "$TORCH_INDEX_URL")
fi
# (the odd expansion keeps `set -u` happy with an empty array on bash < 4.4)
run "${PIP[@]}" ${torch_index[@]+"${torch_index[@]}"} "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" -c constraints.txt
run "${PIP[@]}" -r requirements.txt -c constraints.txt
if [ -f requirements-gpu.txt ]; then
  run "${PIP[@]}" -r requirements-gpu.txt -c constraints.txt
else
  run "${PIP[@]}" "torchvision==$TORCHVISION_VERSION" "${GPU_EXTRAS[@]}" -c constraints.txt
fi
# spandrel (Real-ESRGAN) without its declared dependencies, as on the CPU (see requirements.txt)
run "${PIP[@]}" --no-deps spandrel==0.4.2 -c constraints.txt
if [ "${WITH_AWQ:-0}" != "0" ]; then
  run "${PIP[@]}" gptqmodel==7.6.0 -c constraints.txt
fi
if [ "${WITH_XFORMERS:-0}" != "0" ]; then
  run "${PIP[@]}" xformers==0.0.35 -c constraints.txt
fi

# A broken torchvision fails at import with a RuntimeError, so check it here, not at first use.
run "$CAMI2V_VENV/bin/python" -c "
import torch, torchvision
print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| CUDA build', torch.version.cuda,
      '| GPU visible here:', torch.cuda.is_available())
"
echo "Environment ready: $CAMI2V_VENV"
echo "Next: fetch weights with $CAMI2V_VENV/bin/python -m core.weights fetch NAME, then sbatch cami2v.job"
