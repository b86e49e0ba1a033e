#!/usr/bin/env bash
# Runs every test: formatting, lints, Rust unit/integration/property/crash tests.
# This is the command README.md documents and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test (Rust)"
cargo test --workspace

echo "== Python: SGLang venv (cached under ~/.cache), package install, pytest"
VENV="$(bash scripts/setup_sglang_venv.sh)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ./python
"$VENV/bin/python" -m pytest python/tests -q
