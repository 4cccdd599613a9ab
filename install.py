"""Run by ComfyUI-Manager after it installs requirements.txt. Safe to run any number of times.

It installs nothing (ComfyUI-Manager already installed requirements.txt, and torch is ComfyUI's
to manage); it only reports anything missing, so a broken environment is noticed at install time.
"""

import importlib.util
import sys

REQUIRED = ["torch", "numpy", "safetensors", "PIL", "tqdm", "einops"]


def main() -> int:
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"[mvs2v] missing Python packages: {', '.join(missing)}; install requirements.txt into ComfyUI's "
              "environment (torch comes with ComfyUI itself)", file=sys.stderr)
        return 1
    print("[mvs2v] dependencies present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
