"""User-facing errors.

Every problem a user can cause (a missing file, a wrong shape, a mismatched adapter) is raised as
:class:`MVS2VError` with a message that names the problem and the fix. The CLI prints the message
alone, without a traceback.
"""

from __future__ import annotations


class MVS2VError(Exception):
    """A problem with the user's input, with a message that says what is wrong and how to fix it."""


class CheckpointError(MVS2VError):
    """A weights file that cannot be read, is not safetensors, or does not fit the model."""


class AdapterMismatchError(MVS2VError):
    """An adapter file made for another model, position scheme or layout."""


class OutputError(MVS2VError):
    """An output location that cannot be written (a folder, no permission, no space), or a failed write."""
