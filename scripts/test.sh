#!/usr/bin/env bash
# Installs what the tests need (first run only) and runs the whole test suite on CPU.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec python -m pytest -q "$@"
