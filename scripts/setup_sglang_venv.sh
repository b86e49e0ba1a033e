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
# import at module level, so tests can build those on CPU too. SERVER_DEPS is
# what SGLang's HTTP server needs on top, for the end-to-end test.
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
# What `python -m sglang.launch_server` imports or runs on CPU (the e2e test,
# python/tests/e2e): the HTTP stack, modules that sglang.srt.entrypoints imports at
# module level, and ninja, which builds SGLang's hicache_hash_cpp extension on the
# first storage query. Pinned to the versions the e2e test passed with.
SERVER_DEPS=(
  uvicorn==0.55.0 fastapi==0.165.0 uvloop==0.23.0 python-multipart==0.0.34
  setproctitle==1.3.8 prometheus-client==0.26.0 ninja==1.13.2
  openai==3.60.0 openai-harmony==0.0.4 partial-json-parser==0.2.1.1.post7
  einops==0.8.2 jsonschema==4.26.0 xgrammar==0.2.9 soundfile==0.14.0
)

script_hash() {
  {
    printf '%s\n' "$SGLANG_SPEC" "${DEPS[@]}" "${SERVER_DEPS[@]}"
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
log "installing the server's dependencies: ${SERVER_DEPS[*]}"
"${PIP[@]}" install --quiet "${SERVER_DEPS[@]}" >&2
log "installing $SGLANG_SPEC (--no-deps)"
"${PIP[@]}" install --quiet --no-deps "$SGLANG_SPEC" >&2

# Prove the classes we rely on import on this machine before stamping.
"$VENV/bin/python" - <<'PY' >&2
from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageConfig, HiCacheFile  # noqa: F401
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory  # noqa: F401
from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost  # noqa: F401
from sglang.srt.mem_cache.pool_host.mla import MLATokenToKVPoolHost  # noqa: F401
import sglang.srt.entrypoints.http_server  # noqa: F401  (the e2e test's server)
import torch
print("sglang HiCache classes and HTTP server import; torch", torch.__version__)
PY
[[ -x "$VENV/bin/ninja" ]] || { log "ninja is missing from $VENV/bin"; exit 1; }

echo "$want" >"$stamp"
echo "$VENV"
