#!/usr/bin/env bash
# Runs the real-ComfyUI integration tests (tests/comfyui/) on CPU against the ComfyUI trees in shared/.
#
# Usage: scripts/comfyui_tests.sh [0.3.64|0.33.0] [extra pytest args...]
#   With no version (or "all"), both versions run one after the other; the script exits non-zero if
#   either run fails, or if any test was skipped (a skip here means the integration was not tested).
#
# Environment (all optional):
#   MVS2V_COMFYUI_CACHE  where the ComfyUI venv lives (default ~/.cache/mvs2v-comfyui)
#   MVS2V_COMFYUI_TREES  folder holding the ComfyUI trees 0.3.64/ and 0.33.0/ (default <repo>/../shared/comfyui)
#   MVS2V_TORCH_VERSION  torch version, as in scripts/env.sh (default 2.13.0)
#   MVS2V_PYTHON         the Python that makes the venv (default python3)
#
# One venv serves both ComfyUI versions, and it also runs pytest (so the tests' own torch and ComfyUI's
# are the same build). It holds:
#   - PyPI's CUDA build of torch (it runs on CPU with --cpu). The CPU-only wheel cannot run ComfyUI: the
#     torchvision/torchaudio wheels ComfyUI's requirements bring from PyPI are CUDA builds.
#   - both trees' requirements.txt, with a constraints file so nothing replaces torch; 0.33.0's
#     requirements upgrade comfyui-workflow-templates to a release without the templates/ folder that
#     0.3.64 needs at start-up, so 0.1.95 is put back with --no-deps (0.33.0 only logs a warning).
#   - the pack's requirements.txt and pyproject's `test` extra (pytest, av, ...). The repo itself is not
#     installed: pytest's `pythonpath = ["."]` makes mvs2v_core importable, and ComfyUI loads the pack
#     from the symlink the tests put in its custom_nodes/, so the venv works for any clone.
# The venv is made once; a stamp holding a hash of everything above makes a later run skip the install
# unless one of those inputs changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MVS2V_COMFYUI_CACHE:-$HOME/.cache/mvs2v-comfyui}"
TREES="${MVS2V_COMFYUI_TREES:-$ROOT/../shared/comfyui}"
TORCH_VERSION="${MVS2V_TORCH_VERSION:-2.13.0}"
TEMPLATES_PIN="comfyui-workflow-templates==0.1.95"
VERSIONS_ALL=(0.3.64 0.33.0)
VENV="$CACHE/venv"
PY="$VENV/bin/python"

# ---- arguments -----------------------------------------------------------------------------------
versions=("${VERSIONS_ALL[@]}")
if [ $# -gt 0 ]; then
  case "$1" in
    all) shift ;;
    0.3.64|0.33.0) versions=("$1"); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) ;;  # no version given: the rest are pytest arguments
    *) echo "unknown ComfyUI version '$1' (expected 0.3.64, 0.33.0 or all)" >&2; exit 2 ;;
  esac
fi
TREES="$(cd "$TREES" 2>/dev/null && pwd)" || {
  echo "ComfyUI trees not found at ${MVS2V_COMFYUI_TREES:-$ROOT/../shared/comfyui}: the real-ComfyUI tests need" \
       "the unmodified trees 0.3.64/ and 0.33.0/ there (CI has them in ../shared/comfyui), or set MVS2V_COMFYUI_TREES" >&2
  exit 2
}
for v in "${VERSIONS_ALL[@]}"; do  # the venv is made from both trees' requirements, whichever runs
  [ -f "$TREES/$v/main.py" ] || { echo "no ComfyUI $v at $TREES/$v" >&2; exit 2; }
done

# ---- the venv (once) -----------------------------------------------------------------------------
# The pack's test extra, read from pyproject.toml (one requirement a line).
test_extra="$("${MVS2V_PYTHON:-python3}" - "$ROOT/pyproject.toml" <<'EOF'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["test"]))
EOF
)"
stamp_want="$( { echo "torch $TORCH_VERSION; $TEMPLATES_PIN; $("${MVS2V_PYTHON:-python3}" --version 2>&1)"
                 cat "$TREES/0.3.64/requirements.txt" "$TREES/0.33.0/requirements.txt" "$ROOT/requirements.txt"
                 echo "$test_extra"; } | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.mvs2v-comfyui-installed"
if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$stamp_want" ]; then
  t0=$SECONDS
  echo "== making the ComfyUI venv in $VENV (first run: about 5 GB to download)"
  mkdir -p "$CACHE"
  [ -x "$PY" ] || "${MVS2V_PYTHON:-python3}" -m venv "$VENV"
  rm -f "$stamp"
  export PIP_NO_CACHE_DIR=1  # the venv itself is the cache; a pip cache would hold the 4 GB torch twice
  pip_install() { "$PY" -m pip install -q --progress-bar off "$@"; }
  pip_install --upgrade pip
  # PyPI's CUDA build, not the +cpu one (which a local wheel folder may offer for the same version).
  pip_install "torch==$TORCH_VERSION,!=$TORCH_VERSION+cpu"
  constraints="$CACHE/constraints.txt"
  echo "torch==$TORCH_VERSION,!=$TORCH_VERSION+cpu" > "$constraints"
  pip_install -r "$TREES/0.3.64/requirements.txt" -c "$constraints"
  pip_install -r "$TREES/0.33.0/requirements.txt" -c "$constraints"
  pip_install --no-deps --force-reinstall "$TEMPLATES_PIN"
  mapfile -t extra_reqs <<< "$test_extra"
  pip_install -r "$ROOT/requirements.txt" "${extra_reqs[@]}" -c "$constraints"
  "$PY" -c "import torch, torchvision, torchaudio, pytest; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| torchaudio', torchaudio.__version__, '| pytest', pytest.__version__)"
  echo "$stamp_want" > "$stamp"
  echo "== venv ready in $((SECONDS - t0)) s"
fi

# ---- the test runs -------------------------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/mvs2v-comfyui.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$ROOT"
failed=()
for v in "${versions[@]}"; do
  echo "== ComfyUI $v"
  # A writable copy: the shared trees may be read-only, and ComfyUI writes under its own root.
  # The shared trees leave out the folders a git checkout has almost empty (custom_nodes/ holds only
  # examples there); ComfyUI lists <root>/custom_nodes at start-up and stops if it is missing.
  cp -R "$TREES/$v" "$work/$v"
  chmod -R u+w "$work/$v"
  mkdir -p "$work/$v/custom_nodes" "$work/$v/models"
  log="$work/pytest-$v.log"
  t0=$SECONDS
  set +e
  COMFYUI_DIR="$work/$v" COMFYUI_PYTHON="$PY" "$PY" -m pytest tests/comfyui -q -rs -p no:cacheprovider "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  summary="$(grep -E '^(=+ )?(no tests ran|[0-9]+ [a-z]+).* in [0-9.]+s' "$log" | tail -n 1 || true)"  # pytest's closing line
  if [ "$rc" -ne 0 ]; then
    failed+=("$v (pytest exit $rc)")
  elif ! grep -qE '[0-9]+ passed' <<< "$summary" || grep -qE '[0-9]+ skipped' <<< "$summary"; then
    failed+=("$v (tests skipped or none ran: $summary)")
  fi
  echo "== ComfyUI $v: ${summary:-no summary} ($((SECONDS - t0)) s)"
  rm -rf "${work:?}/$v"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "ComfyUI integration tests FAILED for: ${failed[*]}" >&2
  exit 1
fi
echo "ComfyUI integration tests passed for: ${versions[*]}"
