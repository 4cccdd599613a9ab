"""``python -m mvs2v_data`` = ``mvs2v-data``."""

import sys

from .cli import main

sys.exit(main())
