"""``python -m mvs2v_train`` (and ``accelerate launch -m mvs2v_train``): the ``mvs2v-train`` command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
