"""The toy world as a ``mvs2v-data`` generation back-end (entry point group ``mvs2v.data_stages``).

With ``generate.backend = "toy"`` the toy renderer stands in for the generative models, so the whole
curation pipeline (generation, references, filters, manifest) runs on a CPU in seconds: item ``id``'s
scene is ``scene_for_index(work.seed, meta.toy_index or crc32(id))`` with one object; generate-images
renders its front view, synthesize-views its views at the requested yaws, generate-videos the clip
(the object turning), and each sets the toy caption. mvs2v_data never imports this module.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._core import atomic_write, write_lossless_mp4

__all__ = ["register_data_stages", "ToyDataBackend"]


class ToyDataBackend:
    """``factory(cfg)`` of the ``toy`` back-end (see the module docstring)."""

    def __init__(self, cfg: Any, width: int = 32, height: int = 32, frames: int = 17) -> None:
        self.seed = int(cfg.work.seed)
        self.size = (width, height, frames)

    def check(self, needs: set[str]) -> None:  # nothing to reach: the renderer is local
        return None

    def _scene(self, record: dict) -> Any:
        from .dataset import scene_for_index

        index = int(record.get("meta", {}).get("toy_index", zlib.crc32(record["id"].encode())))
        w, h, f = self.size
        return scene_for_index(self.seed, index, w, h, f, two_object_prob=0.0)[0]

    def _updates(self, scene: Any) -> dict:
        from .world import caption_for

        return {"caption": caption_for(scene), "kind": "object", "subject": scene.objects[0].name}

    def _save(self, image: np.ndarray, dest: Path) -> None:
        from PIL import Image

        with atomic_write(dest, suffix=".png") as tmp:
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, format="PNG")

    def generate_image(self, record: dict, dest: Path, seed: int) -> dict:
        return self.synthesize_view(record, dest, 0.0, dest, seed)

    def synthesize_view(self, record: dict, image: Path, yaw: float, dest: Path, seed: int) -> dict:
        from .truth import make_reference

        scene = self._scene(record)
        self._save(make_reference(scene, 0, float(yaw), scene.width, scene.height).image, dest)
        return self._updates(scene)

    def generate_video(self, record: dict, image: Path | None, dest: Path, seed: int) -> dict:
        from .render import render_video

        scene = self._scene(record)
        write_lossless_mp4(render_video(scene).frames, dest, 8.0)
        return self._updates(scene)


def register_data_stages(register: Callable[[str, Callable[[Any], Any]], None]) -> None:
    register("toy", ToyDataBackend)
