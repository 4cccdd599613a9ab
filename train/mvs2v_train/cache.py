"""The latent / embedding cache: safetensors shards of items keyed by content hash, plus a journal.

Layout of ``data.cache_dir``::

    shards/shard-000000.safetensors   tensors named by item key ("video-3f2a...", "text-...", ...)
    journal.jsonl                     one JSON object per line, appended after the data it names is on disk:
        {"shard": "shard-000000.safetensors", "items": {key: shape, ...}}
        {"record": <row key>, "id": ..., "video": key, "text": key, "refs": [[[keys per variant] per view]
         per subject], "vit": ..., "gray": key, "files": {path: [size, mtime_ns, sha256]}, ...}

An item's key is a hash of everything that determines it: the *content* of the input file (sha256),
the preprocessing (resolution bucket, frames, augmentation variant...) and a fingerprint of the
encoder. Re-running ``cache`` therefore re-encodes exactly the items whose inputs changed (a new
caption re-encodes only the text; a replaced image only that view) and nothing else. A shard is
written atomically and only then named in the journal, so a crash during a long caching run loses
at most one shard of work and never corrupts the cache; a torn last journal line is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import safe_open

from mvs2v_core.errors import MVS2VError
from mvs2v_core.utils import save_safetensors_atomic

from .config import TrainConfig
from .manifest import Sample, read_manifest
from .media import load_clip, pick_bucket, probe_video, reference_view

JOURNAL = "journal.jsonl"
SHARDS = "shards"
CACHE_FORMAT = 1


def _h(*parts: Any) -> str:
    """Stable hex digest of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def encoder_fingerprint(path: str | os.PathLike) -> str:
    """Identity of an encoder (file or folder) without reading gigabytes.

    Small files (configs, tokenizers) are hashed whole; weight files by size plus their first and
    last 4 MiB (a retrained or different checkpoint changes these).
    """
    p = Path(path)
    if not p.exists():
        raise MVS2VError(f"encoder path {p} does not exist")
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        if f.name.startswith("."):
            continue
        size = f.stat().st_size
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{size}".encode())
        with open(f, "rb") as fh:
            if size <= 8 << 20:
                h.update(fh.read())
            else:
                h.update(fh.read(4 << 20))
                fh.seek(size - (4 << 20))
                h.update(fh.read())
    return h.hexdigest()[:24]


# ---- the store -------------------------------------------------------------------------------------


class CacheStore:
    """Read and append to a cache folder. One writer at a time (the ``cache`` command)."""

    def __init__(self, root: str | os.PathLike, max_open: int = 64) -> None:
        self.root = Path(root)
        self.items: dict[str, str] = {}  # key -> shard file name
        self.shapes: dict[str, list[int]] = {}
        self.records: dict[str, dict] = {}
        self._handles: OrderedDict[str, Any] = OrderedDict()
        self._max_open = max_open
        self._next_shard = 0
        self._load()

    @property
    def exists(self) -> bool:
        return (self.root / JOURNAL).is_file()

    def _load(self) -> None:
        journal = self.root / JOURNAL
        if not journal.is_file():
            return
        with open(journal, encoding="utf-8") as f:
            for text in f:
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError:
                    continue  # a torn last line from a crash: the shard it names was never listed
                if "shard" in entry:
                    name = entry["shard"]
                    if not (self.root / SHARDS / name).is_file():
                        continue
                    for key, shape in entry["items"].items():
                        self.items[key] = name
                        self.shapes[key] = shape
                    num = int(name.split("-")[1].split(".")[0])
                    self._next_shard = max(self._next_shard, num + 1)
                elif "record" in entry:
                    self.records[entry["record"]] = entry

    def has(self, key: str) -> bool:
        return key in self.items

    def get(self, key: str) -> torch.Tensor:
        """The cached tensor (float32, CPU). Raises :class:`MVS2VError` when missing or unreadable."""
        shard = self.items.get(key)
        if shard is None:
            raise MVS2VError(f"cache item {key} is missing: run `mvs2v-train cache` again")
        handle = self._handles.get(shard)
        if handle is None:
            try:
                handle = safe_open(str(self.root / SHARDS / shard), framework="pt", device="cpu")
            except Exception as e:
                raise MVS2VError(f"cache shard {shard} cannot be read ({e}); delete it and run `mvs2v-train cache`") from None
            self._handles[shard] = handle
            if len(self._handles) > self._max_open:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(shard)
        try:
            return handle.get_tensor(key).float()
        except Exception as e:
            raise MVS2VError(f"cache item {key} in {shard} cannot be read ({e})") from None

    def write_shard(self, items: dict[str, torch.Tensor], records: Iterable[dict]) -> str | None:
        """Write ``items`` as a new shard (atomically), then journal it and the ``records``."""
        name = None
        lines = []
        if items:
            name = f"shard-{self._next_shard:06d}.safetensors"
            self._next_shard += 1
            save_safetensors_atomic(items, self.root / SHARDS / name, {"format": "mvs2v-train-cache"})
            shapes = {k: list(v.shape) for k, v in items.items()}
            lines.append({"shard": name, "items": shapes})
        lines.extend(records)
        if not lines:
            return name
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / JOURNAL, "a", encoding="utf-8") as f:
            for entry in lines:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if name is not None:
            for key, t in items.items():
                self.items[key] = name
                self.shapes[key] = list(t.shape)
        for r in records:
            self.records[r["record"]] = r
        return name


# ---- keys ------------------------------------------------------------------------------------------


def data_params(cfg: TrainConfig) -> dict:
    """The preprocessing settings that change cached items."""
    d = cfg.data
    return {"format": CACHE_FORMAT, "resolutions": d.resolutions, "frames": d.frames, "stride": d.frame_stride,
            "start": d.frame_start, "text_tokens": d.max_text_tokens, "augment": cfg.augment.pixel_params(),
            "mfi": bool(cfg.model.vision_encoder)}


def row_key(sample: Sample) -> str:
    """Identity of a manifest row: its JSON content and the files it names (not its line number)."""
    row = json.loads(sample.raw)
    row.pop("meta", None)
    return _h("row", row, [str(f) for f in sample.files()])


@dataclass
class Fingerprints:
    vae: str
    text: str
    vision: str | None

    def key(self) -> str:
        return _h(self.vae, self.text, self.vision)


def fingerprints(cfg: TrainConfig) -> Fingerprints:
    for name in ("vae", "text_encoder"):
        if not getattr(cfg.model, name):
            raise MVS2VError(f"model.{name} is empty: caching needs the {name.replace('_', ' ')} to encode with")
    vision = encoder_fingerprint(cfg.resolve(cfg.model.vision_encoder)) if cfg.model.vision_encoder else None
    return Fingerprints(encoder_fingerprint(cfg.resolve(cfg.model.vae)),
                        encoder_fingerprint(cfg.resolve(cfg.model.text_encoder)), vision)


def text_key(caption: str, fp: Fingerprints, max_tokens: int) -> str:
    return "text-" + _h(caption, fp.text, max_tokens)


def gray_key(width: int, height: int, fp: Fingerprints) -> str:
    return "gray-" + _h(width, height, fp.vae)


# ---- encoders --------------------------------------------------------------------------------------


@dataclass
class Encoders:
    """The frozen encoders, loaded on first use."""

    cfg: TrainConfig
    device: torch.device
    _vae: Any = None
    _text: Any = None
    _vision: Any = None

    @property
    def vae(self):
        if self._vae is None:
            from mvs2v_core.pipeline.vae import load_vae

            self._vae = load_vae(self.cfg.resolve(self.cfg.model.vae), device=self.device, dtype=torch.float32)
        return self._vae

    @property
    def text(self):
        if self._text is None:
            from mvs2v_core.pipeline.text import load_text_encoder

            self._text = load_text_encoder(self.cfg.resolve(self.cfg.model.text_encoder), device=self.device)
        return self._text

    @property
    def vision(self):
        if self._vision is None:
            from mvs2v_core.pipeline.vision import load_vision_encoder

            self._vision = load_vision_encoder(self.cfg.resolve(self.cfg.model.vision_encoder), device=self.device)
        return self._vision

    def encode_text(self, caption: str) -> torch.Tensor:
        return self.text.encode([caption], max_length=self.cfg.data.max_text_tokens)[0].float().cpu()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, C, h, w]``, each image alone (as inference encodes references)."""
        return self.vae.encode_images(images)[:, :, 0].float().cpu()


# ---- the caching run -------------------------------------------------------------------------------


@dataclass
class CacheReport:
    """What a caching run did. ``problems`` are ``(line, reason)`` for rows that could not be cached."""

    rows: int = 0
    cached: int = 0
    unchanged: int = 0
    encoded: dict[str, int] = field(default_factory=lambda: {"video": 0, "text": 0, "ref": 0, "vit": 0, "gray": 0})
    problems: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        enc = ", ".join(f"{v} {k}" for k, v in self.encoded.items())
        return (f"{self.rows} rows: {self.cached} cached ({self.unchanged} unchanged, reused), "
                f"{len(self.problems)} failed; encoded {enc} in {self.seconds:.1f}s")


class _StatCache:
    """sha256 of input files, reused while (size, mtime) are unchanged."""

    def __init__(self, records: Iterable[dict]) -> None:
        self.known: dict[str, tuple[int, int, str]] = {}
        for r in records:
            for path, (size, mtime, sha) in r.get("files", {}).items():
                self.known[path] = (size, mtime, sha)

    def sha(self, path: Path) -> tuple[int, int, str]:
        st = path.stat()
        prev = self.known.get(str(path))
        if prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns:
            return prev
        out = (st.st_size, st.st_mtime_ns, file_sha256(path))
        self.known[str(path)] = out
        return out


def record_is_fresh(record: dict | None, params: str, enc_key: str | None, store: CacheStore) -> bool:
    """A journaled record can be reused: same settings, unchanged files, every item present."""
    if record is None or record.get("params") != params:
        return False
    if enc_key is not None and record.get("encoders") != enc_key:
        return False
    for path, (size, mtime, _sha) in record.get("files", {}).items():
        p = Path(path)
        if p.exists():
            st = p.stat()
            if st.st_size != size or st.st_mtime_ns != mtime:
                return False
    return all(store.has(k) for k in record_keys(record))


def record_keys(record: dict) -> list[str]:
    keys = [record["video"], record["text"], record["empty_text"]]
    if record.get("gray"):
        keys.append(record["gray"])
    keys += [k for subj in record["refs"] for view in subj for k in view]
    if record.get("vit"):
        keys += [k for subj in record["vit"] for k in subj]
    return keys


def run_cache(cfg: TrainConfig, device: str | torch.device = "cpu",
              log: Callable[[str], None] = print, encoders: Encoders | None = None) -> CacheReport:
    """Encode everything the manifest needs that is not cached yet; see the module docstring."""
    t0 = time.perf_counter()
    report = CacheReport()
    manifest = read_manifest(cfg.resolve(cfg.data.manifest), cfg.references.slots_per_subject, check_files=True)
    report.rows = manifest.total_rows
    report.problems.extend(manifest.problems)
    store = CacheStore(cfg.cache_dir)
    fp = fingerprints(cfg)
    params = _h(data_params(cfg))
    enc_key = fp.key()
    stats = _StatCache(store.records.values())
    enc = encoders or Encoders(cfg, torch.device(device))
    aug = cfg.augment.pixel_params()
    d = cfg.data
    pending: dict[str, torch.Tensor] = {}
    pending_records: list[dict] = []

    def flush() -> None:
        if pending or pending_records:
            store.write_shard(dict(pending), list(pending_records))
            pending.clear()
            pending_records.clear()

    def need(key: str) -> bool:
        return not store.has(key) and key not in pending

    empty_key = text_key("", fp, d.max_text_tokens)
    if manifest.samples:
        mult = enc.vae.spatial_factor * 2  # the DiT's 2x2 patches on top of the VAE's downsampling
        for w, h in d.resolutions:
            if w % mult or h % mult:
                raise MVS2VError(f"data.resolutions entry [{w}, {h}] is not a multiple of {mult} (this VAE's "
                                 f"{enc.vae.spatial_factor}x downsampling times the DiT's 2x2 patches): use "
                                 f"[{w // mult * mult}, {h // mult * mult}]")
    try:
        if need(empty_key):
            pending[empty_key] = enc.encode_text("")
            report.encoded["text"] += 1
        for sample in manifest.samples:
            rk = row_key(sample)
            if record_is_fresh(store.records.get(rk), params, enc_key, store):
                report.unchanged += 1
                report.cached += 1
                continue
            try:
                record = _cache_sample(sample, rk, cfg, fp, params, enc_key, stats, enc, aug, need, pending, report,
                                       store)
            except MVS2VError as e:
                report.problems.append((sample.line, str(e)))
                continue
            record["empty_text"] = empty_key
            pending_records.append(record)
            report.cached += 1
            if len(pending) >= d.cache_shard_items:
                flush()
                log(f"cache: {report.cached}/{len(manifest.samples)} samples done")
    finally:
        flush()  # never lose finished work, even when something unexpected stops the run
    report.problems.sort()
    report.seconds = time.perf_counter() - t0
    return report


def _cache_sample(sample: Sample, rk: str, cfg: TrainConfig, fp: Fingerprints, params: str, enc_key: str,
                  stats: _StatCache, enc: Encoders, aug: dict, need: Callable[[str], bool],
                  pending: dict[str, torch.Tensor], report: CacheReport, store: CacheStore) -> dict:
    d = cfg.data
    files = {str(p): list(stats.sha(p)) for p in sample.files()}
    sha = {p: v[2] for p, v in files.items()}
    new: dict[str, torch.Tensor] = {}  # committed to `pending` only when the whole row worked

    if sample.video is not None:
        _, w0, h0 = probe_video(sample.video)
        width, height = pick_bucket(w0, h0, d.resolutions)
        vkey = "video-" + _h(sha[str(sample.video)], width, height, d.frames, d.frame_stride, d.frame_start, fp.vae)
        if need(vkey):
            clip, _ = load_clip(sample.video, d.frames, d.frame_stride, d.frame_start, d.resolutions)
            if clip.shape[1] < d.min_frames:
                raise MVS2VError(f"video {sample.video} has only {clip.shape[1]} usable frames; data.min_frames is "
                                 f"{d.min_frames}")
            new[vkey] = enc.vae.encode(clip[None])[0].float().cpu()
            report.encoded["video"] += 1
    else:
        vkey = "latents-" + _h(sha[str(sample.latents)])
        lat = _read_latents_file(sample.latents)  # type: ignore[arg-type]
        if lat.shape[0] != enc.vae.z_dim:
            raise MVS2VError(f"latents file {sample.latents} has {lat.shape[0]} channels but the VAE makes "
                             f"{enc.vae.z_dim}: it was encoded with another VAE")
        if need(vkey):
            new[vkey] = lat
            report.encoded["video"] += 1
        sf = enc.vae.spatial_factor
        width, height = lat.shape[-1] * sf, lat.shape[-2] * sf

    tkey = text_key(sample.caption, fp, d.max_text_tokens)
    if need(tkey) and tkey not in new:
        new[tkey] = enc.encode_text(sample.caption)
        report.encoded["text"] += 1

    gkey = gray_key(width, height, fp)
    if need(gkey) and gkey not in new:
        from mvs2v_core.pipeline.images import gray_image, to_tensor

        new[gkey] = enc.encode_images(to_tensor(gray_image(width, height))[None])[0]
        report.encoded["gray"] += 1

    refs: list[list[list[str]]] = []
    vits: list[list[str]] | None = [] if fp.vision else None
    variants = cfg.augment.variants
    for subj in sample.subjects:
        subj_refs, subj_vit = [], []
        for view in subj.views:
            isha = sha[str(view.image)]
            keys = ["ref-" + _h(isha, width, height, v, aug if v else None, fp.vae) for v in range(variants)]
            todo = [(v, k) for v, k in enumerate(keys) if need(k) and k not in new]
            if todo:
                imgs = torch.stack([reference_view(view.image, width, height, v, seed=int(isha[:12], 16), augment=aug)
                                    for v, _ in todo])
                lat = enc.encode_images(imgs)
                for (_, k), t in zip(todo, lat):
                    new[k] = t
                report.encoded["ref"] += len(todo)
            subj_refs.append(keys)
            if fp.vision:
                vk = "vit-" + _h(isha, width, height, fp.vision)
                if need(vk) and vk not in new:
                    img = reference_view(view.image, width, height, 0)
                    new[vk] = enc.vision(img[None])[0].float().cpu()
                    report.encoded["vit"] += 1
                subj_vit.append(vk)
        refs.append(subj_refs)
        if vits is not None:
            vits.append(subj_vit)
    shape = list(new[vkey].shape) if vkey in new else list(pending[vkey].shape) if vkey in pending else store.shapes[vkey]
    pending.update(new)
    return {
        "record": rk, "id": sample.id, "line": sample.line, "params": params, "encoders": enc_key,
        "files": files, "video": vkey, "size": [width, height], "latent_shape": list(shape), "text": tkey,
        "gray": gkey, "refs": refs, "vit": vits,
    }


def _read_latents_file(path: Path) -> torch.Tensor:
    if path.suffix.lower() != ".safetensors":
        raise MVS2VError(f"latents file {path} must be .safetensors (pickle files are never loaded)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            if "latents" not in f.keys():
                raise MVS2VError(f"latents file {path} has no 'latents' tensor (it has {list(f.keys())[:5]})")
            lat = f.get_tensor("latents").float()
    except MVS2VError:
        raise
    except Exception as e:
        raise MVS2VError(f"latents file {path} cannot be read: {e}") from None
    if lat.ndim == 5 and lat.shape[0] == 1:
        lat = lat[0]
    if lat.ndim != 4:
        raise MVS2VError(f"latents file {path} holds shape {list(lat.shape)}; expected [C, F, H, W]")
    return lat.contiguous()


__all__ = ["CacheStore", "CacheReport", "Encoders", "run_cache", "row_key", "data_params", "fingerprints",
           "record_is_fresh", "record_keys", "encoder_fingerprint", "file_sha256"]
