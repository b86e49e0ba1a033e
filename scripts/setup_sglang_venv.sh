#!/usr/bin/env bash
# Create (or reuse) a Python virtual environment in which SGLang's real HiCache
# classes import and run on CPU, plus the tools to build and test sglang-lsm.
#
#   scripts/setup_sglang_venv.sh            # prints the venv path on stdout when done
#
# Location: ${SGLANG_LSM_VENV:-$HOME/.cache/sglang-lsm/venv}
# Python:   ${PYTHON:-python3} (3.10 or newer)
#
# The install is large (torch is ~5 GB with its CUDA libraries) and slow, so it is
# cached: a stamp file inside the venv records a hash of the package list and of
# this script, and when it matches the script exits at once. Only PyPI is needed.
#
# sglang itself is installed with --no-deps: its full dependency set pulls in
# CUDA kernels and servers we do not need. The first group below is what
# hicache_storage.py, the storage backend factory and HiCacheFile import; the
# second is what the real host memory pools (pool_host/mha.py, pool_host/mla.py)
# import at module level, so tests can build those on CPU too.
set -euo pipefail

VENV="${SGLANG_LSM_VENV:-$HOME/.cache/sglang-lsm/venv}"
PYTHON="${PYTHON:-python3}"

SGLANG_SPEC="sglang==0.5.23"
# Installed with their dependencies.
DEPS=(
  torch
  numpy orjson psutil pybase64 requests packaging pillow starlette msgspec
  pydantic pyzmq tqdm ipython aiohttp zstandard
  torchvision transformers dill apache-tvm-ffi sentencepiece compressed-tensors gguf
  "maturin>=1.8,<2" pytest
)

script_hash() {
  {
    printf '%s\n' "$SGLANG_SPEC" "${DEPS[@]}"
    cat "${BASH_SOURCE[0]}"
  } | sha256sum | cut -d' ' -f1
}

want="$(script_hash)"
stamp="$VENV/.sglang-lsm-stamp"

if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$VENV"
  exit 0
fi

log() { echo "setup_sglang_venv: $*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv at $VENV with $("$PYTHON" --version 2>&1)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
"${PIP[@]}" install --quiet --upgrade pip >&2
log "installing ${DEPS[*]}"
"${PIP[@]}" install --quiet "${DEPS[@]}" >&2
log "installing $SGLANG_SPEC (--no-deps)"
"${PIP[@]}" install --quiet --no-deps "$SGLANG_SPEC" >&2

# Prove the classes we rely on import on this machine before stamping.
"$VENV/bin/python" - <<'PY' >&2
from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageConfig, HiCacheFile  # noqa: F401
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory  # noqa: F401
from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost  # noqa: F401
from sglang.srt.mem_cache.pool_host.mla import MLATokenToKVPoolHost  # noqa: F401
import torch
print("sglang HiCache classes import; torch", torch.__version__)
PY

echo "$want" >"$stamp"
echo "$VENV"
