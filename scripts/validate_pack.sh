#!/usr/bin/env bash
# The Comfy Registry's own check of the node pack: `comfy node validate` (comfy-cli), run by CI
# (.ci/run) and by the publish workflow before publishing (.github/workflows/publish.yml).
#
# What it checks (comfy-cli 1.23.0, read in its source): pyproject.toml parses, [project] has a
# version, the OS / accelerator classifiers, `requires-comfyui` and a comfyui-frontend-package
# requirement have the registry's formats, and `ruff check --select S102,S307,E702` (exec, eval,
# several statements on one line) finds nothing. It reads only the working tree: no network.
# comfy-cli reports format problems and ruff findings as warnings and still exits 0 ("this will be
# an error soon"), so this script fails on any warning or error line, not only on the exit status.
#
# comfy-cli lives in its own venv (it brings about 340 MB: uv, ruff, ffmpeg), not in the project's:
#   MVS2V_COMFY_CLI_VENV  where (default ~/.cache/mvs2v-comfy-cli)
#   MVS2V_PYTHON          the Python that makes it (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMFY_CLI_VERSION="1.23.0"
VENV="${MVS2V_COMFY_CLI_VENV:-$HOME/.cache/mvs2v-comfy-cli}"

if [ "$(cat "$VENV/.mvs2v-comfy-cli" 2>/dev/null)" != "$COMFY_CLI_VERSION" ]; then
  echo "== installing comfy-cli $COMFY_CLI_VERSION in $VENV"
  [ -x "$VENV/bin/python" ] || "${MVS2V_PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --progress-bar off "comfy-cli==$COMFY_CLI_VERSION"
  echo "$COMFY_CLI_VERSION" > "$VENV/.mvs2v-comfy-cli"
fi

cd "$ROOT"
set +e
# --skip-prompt: no question on stdin (CI has none); no telemetry, so nothing leaves the machine.
out="$("$VENV/bin/comfy" --skip-prompt --no-enable-telemetry node validate 2>&1 < /dev/null)"
rc=$?
set -e
echo "$out"
if [ "$rc" -ne 0 ]; then
  echo "comfy node validate FAILED (exit $rc)" >&2
  exit 1
fi
if grep -qiE 'warning|error' <<< "$out" || ! grep -q 'All validation checks passed' <<< "$out"; then
  echo "comfy node validate reported problems (above): fix them before publishing" >&2
  exit 1
fi
echo "comfy node validate: the pack passes the Comfy Registry's checks"
