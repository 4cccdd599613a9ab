"""``python -m experiments.toy_ablation`` (from the repository root)."""

import sys

from .cli import main

sys.exit(main())
