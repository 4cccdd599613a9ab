# Sourced by the quick-start scripts: make (once) and activate the project's virtual environment.
# torch is pinned to the CPU build for the dev/test environment only; the node pack never installs it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MVS2V_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.mvs2v-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q "torch==${MVS2V_TORCH_VERSION:-2.13.0}"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[cli,test]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
