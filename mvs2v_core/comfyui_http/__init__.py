"""A client of a running ComfyUI's public HTTP + websocket API, and ``{{name}}`` workflow placeholders.

Used by ``mvs2v bench --comfyui`` and the data pipeline; it imports nothing of ComfyUI (only the
standard library, and ``websocket-client`` when installed: ``pip install "mvs2v[bench]"``).
"""

from ._http import ComfyUIError
from .client import ComfyUIClient, JobResult, OutputFile
from .placeholders import fill_placeholders, find_placeholders

__all__ = ["ComfyUIClient", "ComfyUIError", "JobResult", "OutputFile", "fill_placeholders", "find_placeholders"]
