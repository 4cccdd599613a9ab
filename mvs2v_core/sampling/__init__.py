"""Rectified-flow sampling: shifted schedules, Euler / Heun / flow UniPC, CFG and three-pass guidance."""

# The solvers' names (``solvers.SOLVERS`` keys), here so that argparse needs no torch import;
# tests/core/test_sampling.py checks the two agree.
SOLVER_NAMES = ("unipc", "euler", "heun")

# The context-window blending choices (``windows.FUSE_METHODS``), the first the default; here for argparse too.
FUSE_METHODS = ("pyramid", "overlap-linear")
