"""Rectified-flow sampling: shifted schedules, Euler / Heun / flow UniPC, CFG and three-pass guidance."""
