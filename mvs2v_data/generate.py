"""The generative stages (generate-images, synthesize-views, generate-videos) and captioning.

They call a *backend*, chosen by ``generate.backend``:

* ``comfyui`` -- :class:`ComfyUIBackend`: API-format workflows from ``workflows/datagen/`` run on the
  servers of ``generate.servers`` (items spread over them, one job per server at a time) through
  ``mvs2v_core.comfyui_http``; ``/object_info`` and the model lists are checked before the first job.
* a plug-in -- a package registers ``register(name, factory)`` through the entry point group
  ``mvs2v.data_stages`` (the toy world registers ``toy``: its renderer stands in for the models);
* ``none`` -- items must come with their images / videos.

Captioning (``caption``): the item's caption; else a local VLM's (``caption.model``, see
:mod:`mvs2v_data.caption`) on frames of its clip; else its prompt.

A backend is ``factory(cfg) -> object`` with ``check(needs: set[str])`` (called before the first job;
``needs`` holds ``"image"``, ``"views"``, ``"video"``) and ``generate_image(record, dest, seed)``,
``synthesize_view(record, image, yaw, dest, seed)``, ``generate_video(record, image, dest, seed)``:
each writes ``dest`` and returns a dict of record updates (e.g. a caption it knows).
"""

from __future__ import annotations

import json
import queue
import zlib
from pathlib import Path
from typing import Any, Callable

from mvs2v_core.errors import MVS2VError

from .config import DataConfig
from .runner import Context, ItemError, Stage

__all__ = ["backend_factories", "ComfyUIBackend", "GENERATIVE_STAGES", "CAPTION_STAGE", "item_seed"]

IMAGE_OUTPUTS = {".png", ".jpg", ".jpeg", ".webp"}
VIDEO_OUTPUTS = {".mp4", ".webm", ".mov", ".mkv"}


def backend_factories() -> dict[str, Callable[[DataConfig], Any]]:
    """``comfyui`` plus every backend registered through the ``mvs2v.data_stages`` entry points."""
    from mvs2v_core.utils import call_entry_points

    found: dict[str, Callable[[DataConfig], Any]] = {"comfyui": ComfyUIBackend}
    call_entry_points("mvs2v.data_stages", lambda name, factory: found.__setitem__(name, factory), "data stage")
    return found


def item_seed(cfg: DataConfig, item_id: str) -> int:
    """A per-item seed: the same item gets the same seed on every run and machine."""
    return (cfg.work.seed + zlib.crc32(item_id.encode("utf-8"))) % 2**31


def _backend(ctx: Context, needs: set[str]) -> Any:
    name = ctx.cfg.generate.backend
    if name == "none":
        raise MVS2VError(f"some items need generation ({', '.join(sorted(needs))}) but generate.backend is 'none': "
                         "set it to 'comfyui' (and generate.servers), or give those items their image / video")

    def make() -> Any:
        factories = backend_factories()
        if name not in factories:
            raise MVS2VError(f"generate.backend {name!r} is unknown; use none, {', '.join(sorted(factories))}")
        return factories[name](ctx.cfg)

    backend = ctx.resource("backend", make)
    checked = ctx.resource("backend_checked", set)
    if needs - checked:
        backend.check(needs - checked)
        checked |= needs
    return backend


def _without_placeholders(workflow: dict) -> dict:
    """The workflow without the inputs that hold a ``{{placeholder}}`` (an image not uploaded yet is no
    file of the server's list): what is left names the node types and model files to check."""
    return {nid: {**node, "inputs": {k: v for k, v in (node.get("inputs") or {}).items()
                                     if not (isinstance(v, str) and "{{" in v)}}
            for nid, node in workflow.items()}


# ---- ComfyUI -----------------------------------------------------------------------------------


class ComfyUIBackend:
    """Runs the configured workflows on ComfyUI servers; ``client_factory(url, timeout, retries, backoff)``
    defaults to :class:`mvs2v_core.comfyui_http.ComfyUIClient` (tests pass a fake)."""

    WORKFLOW_KEYS = {"image": "image_workflow", "views": "views_workflow", "video": "video_workflow"}

    def __init__(self, cfg: DataConfig, client_factory: Callable[..., Any] | None = None) -> None:
        g = cfg.generate
        if not g.servers:
            raise MVS2VError("generate.servers is empty: list the ComfyUI servers, e.g. [\"http://127.0.0.1:8188\"]")
        if client_factory is None:
            from mvs2v_core.comfyui_http import ComfyUIClient as client_factory  # type: ignore[no-redef]
        self.cfg = cfg
        self.clients = [client_factory(url, timeout=g.timeout, retries=g.retries, backoff=g.backoff)
                        for url in g.servers]
        self.free: queue.Queue = queue.Queue()
        self.pooled = False
        self.workflows: dict[str, dict] = {}

    def _workflow(self, need: str) -> dict:
        key = self.WORKFLOW_KEYS[need]
        value = getattr(self.cfg.generate, key)
        if not value:
            raise MVS2VError(f"generate.{key} is not set: give the API-format workflow (see workflows/datagen/)")
        path = self.cfg.resolve(value)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MVS2VError(f"generate.{key} '{path}' cannot be read as a JSON workflow ({exc})") from None

    def check(self, needs: set[str]) -> None:
        """Every server answers and has the node types and model files of every needed workflow."""
        for need in sorted(needs):
            self.workflows[need] = self._workflow(need)
        for client, url in zip(self.clients, self.cfg.generate.servers):
            try:
                client.system_stats()
                for need in sorted(needs):
                    client.check_workflow(_without_placeholders(self.workflows[need]))
            except MVS2VError as exc:
                raise MVS2VError(f"ComfyUI server {url}: {exc}") from None
            except OSError as exc:
                raise MVS2VError(f"ComfyUI server {url} cannot be reached ({exc}): start it or fix "
                                 "generate.servers") from None
        if not self.pooled:  # the servers join the pool once, after their first check
            for c in self.clients:
                self.free.put(c)
            self.pooled = True

    def _run(self, need: str, item: str, values: dict[str, Any], upload: Path | None, dest: Path,
             suffixes: set[str]) -> None:
        from mvs2v_core.comfyui_http import fill_placeholders

        client = self.free.get()  # one job per server at a time; the others wait for a free one
        try:
            if upload is not None:
                values = {**values, "image": client.upload_image(Path(upload))}
            result = client.run(fill_placeholders(self.workflows[need], values))
            outputs = sorted((f for f in result.outputs if Path(f.filename).suffix.lower() in suffixes),
                             key=lambda f: f.type != "output")  # saved outputs before temporary previews
            if not outputs:
                raise ItemError(f"the {need} workflow gave no {'/'.join(sorted(suffixes))} output")
            client.download(outputs[0], dest)  # atomic: a stop mid-download leaves no partial file
        except ItemError:
            raise
        except MVS2VError as exc:  # a failed job stops the run (the item is not dropped: a re-run retries it)
            raise MVS2VError(f"ComfyUI server {client.url}, item {item!r}: {exc}") from None
        finally:
            self.free.put(client)

    def generate_image(self, record: dict, dest: Path, seed: int) -> dict:
        self._run("image", record["id"], {"prompt": record["prompt"], "seed": seed}, None, dest, IMAGE_OUTPUTS)
        return {}

    def synthesize_view(self, record: dict, image: Path, yaw: float, dest: Path, seed: int) -> dict:
        values = {"prompt": record.get("prompt") or "", "yaw": yaw, "seed": seed}
        self._run("views", record["id"], values, image, dest, IMAGE_OUTPUTS)
        return {}

    def generate_video(self, record: dict, image: Path | None, dest: Path, seed: int) -> dict:
        prompt = (record.get("prompt") or record.get("caption") or "") + self.cfg.generate.video_prompt_suffix
        self._run("video", record["id"], {"prompt": prompt, "seed": seed}, image, dest, VIDEO_OUTPUTS)
        return {}


# ---- the stages ----------------------------------------------------------------------------------


def _needs_image(rec: dict) -> bool:
    return not rec.get("image") and not rec.get("video")


def _wants_image(ctx: Context, rec: dict) -> bool:
    return _needs_image(rec)


def _wants_views(ctx: Context, rec: dict) -> bool:
    # an item still waiting for its image will want views once it has one
    return bool(ctx.cfg.generate.view_yaws) and (bool(rec.get("image")) or _needs_image(rec))


def _wants_video(ctx: Context, rec: dict) -> bool:
    return not rec.get("video")


def _apply(ctx: Context, rec: dict, updates: dict) -> None:
    for key, value in updates.items():
        if key not in ("caption", "kind", "subject", "meta", "prompt"):
            raise MVS2VError(f"generate.backend {ctx.cfg.generate.backend!r} returned the record key {key!r}, "
                             "which a backend may not set")
        rec[key] = value


def _images(ctx: Context, rec: dict) -> tuple[str, str | None]:
    if not _needs_image(rec):
        return "skipped", "image or video given"
    dest = ctx.work.item_dir(rec["id"]) / "image.png"
    _apply(ctx, rec, _backend(ctx, {"image"}).generate_image(rec, dest, item_seed(ctx.cfg, rec["id"])))
    rec["image"] = ctx.work.rel(dest)
    return "done", None


def _views(ctx: Context, rec: dict) -> tuple[str, str | None]:
    yaws = ctx.cfg.generate.view_yaws
    if not yaws or not rec.get("image"):
        return "skipped", "no generate.view_yaws" if not yaws else "no image to turn"
    backend = _backend(ctx, {"views"})
    image = ctx.work.abs(rec["image"])
    rec["views"] = [v for v in rec["views"] if v.get("source") != "synth"]
    for i, yaw in enumerate(yaws):
        dest = ctx.work.item_dir(rec["id"]) / f"view_{i:02d}.png"
        _apply(ctx, rec, backend.synthesize_view(rec, image, float(yaw), dest, item_seed(ctx.cfg, rec["id"]) + i))
        rec["views"].append({"image": ctx.work.rel(dest), "requested_yaw": float(yaw), "yaw": float(yaw),
                             "source": "synth", "frontal": False, "metrics": {}, "dropped": None})
    return "done", None


def _videos(ctx: Context, rec: dict) -> tuple[str, str | None]:
    if rec.get("video"):
        return "skipped", "video given"
    backend = _backend(ctx, {"video"})
    dest = ctx.work.item_dir(rec["id"]) / "video.mp4"
    image = ctx.work.abs(rec["image"]) if rec.get("image") else None
    _apply(ctx, rec, backend.generate_video(rec, image, dest, item_seed(ctx.cfg, rec["id"])))
    rec["video"] = ctx.work.rel(dest)
    return "done", None


def _prepare_backend(need: str, wanted: Callable[[Context, dict], bool]) -> Callable[[Context, list[dict]], None]:
    def prepare(ctx: Context, todo: list[dict]) -> None:
        if any(wanted(ctx, r) for r in todo):
            _backend(ctx, {need})  # servers, node types and model files are checked before the first job
    return prepare


def _captioner(ctx: Context) -> Any:
    from .caption import VLMCaptioner

    c = ctx.cfg.caption
    return ctx.resource("captioner", lambda: VLMCaptioner(ctx.cfg.resolve(c.model), c.prompt))


def _caption(ctx: Context, rec: dict) -> tuple[str, str | None]:
    if rec.get("caption"):
        return "skipped", "caption given"
    if ctx.cfg.caption.model and (rec.get("video") or rec.get("image")):
        from .caption import sample_frames
        from .media import read_frames, read_rgb

        if rec.get("video"):
            images = sample_frames(read_frames(ctx.work.abs(rec["video"])), ctx.cfg.caption.frames)
        else:
            images = [read_rgb(ctx.work.abs(rec["image"]))]
        captioner = _captioner(ctx)
        with ctx.lock:  # one generate() at a time: the model is shared by the workers
            text = captioner(images)
        if not text:
            return "dropped", "the caption model gave an empty caption"
        rec["caption"] = text
        return "done", None
    if not rec.get("prompt"):
        return "dropped", "no caption"
    rec["caption"] = rec["prompt"]
    return "done", None


def _prepare_caption(ctx: Context, todo: list[dict]) -> None:
    if ctx.cfg.caption.model and any(not r.get("caption") for r in todo):
        _captioner(ctx)  # a missing or broken model fails before any item


GENERATIVE_STAGES = [
    Stage("generate-images", _images, _prepare_backend("image", _wants_image), "text -> image (the frontal subject)",
          _wants_image),
    Stage("synthesize-views", _views, _prepare_backend("views", _wants_views),
          "frontal image -> views at generate.view_yaws", _wants_views),
    Stage("generate-videos", _videos, _prepare_backend("video", _wants_video),
          "image -> video with the camera circling the subject", _wants_video),
]
CAPTION_STAGE = Stage("caption", _caption, _prepare_caption,
                      help="the item's caption: given, else a local VLM's (caption.model), else its prompt",
                      needed=lambda ctx, rec: not rec.get("caption"))
