"""One-factor-at-a-time ablation of the MV-S2V / HarmoView design choices in the toy world.

``python -m experiments.toy_ablation --out DIR`` (from the repository root) runs, resumably,
everything that ``docs/ablation.md`` reports:

1. **data** (``DIR/data``, :mod:`.data`): a toy-world dataset (:func:`mvs2v_toy.write_toy_dataset`,
   32x32, 9 frames, four labelled reference views per object) plus the toy codec, text encoder and
   vision encoder; its ``val`` split is the held-out evaluation set. A copy of the manifest without
   the reference views (``manifest_t2v.jsonl``) is the text-to-video pretraining data.
2. **pretrain** (``DIR/pretrain``, :mod:`.run`): a tiny Wan DiT (:data:`.arms.TOY_DIT`) from random
   weights, trained as plain text-to-video, shared by every run. It plays the part of the pretrained
   Wan / Phantom-Wan that MV-S2V and HarmoView fine-tune: the position schemes, empty-slot modes,
   view counts and MFI only differ in how references are added to a model that can already make the
   videos.
3. **runs** (``DIR/runs/<config>-s<seed>``, :mod:`.run`, :mod:`.workers`): per ablation arm
   (:data:`.arms.CONFIGS`) and seed, a full fine-tune of every DiT weight (plus proxy tokens / MFI
   projector where the arm has them) with the Progressive View Curriculum (:mod:`.recipes`), through
   the trainer's API (the run's ``train.toml`` reruns it alone with ``mvs2v-train``), then the
   evaluation (:mod:`.score`): the pipeline API (what ``mvs2v generate`` runs; one pipeline per run,
   the same sampler settings for every run) on a fixed list of held-out samples, scored by
   :func:`mvs2v_toy.evaluate.evaluate`. Each run ends by writing ``metrics.json`` atomically; runs that
   have one are skipped, an interrupted run resumes from its last checkpoint.
4. **table** (``DIR/ablation.md``, ``DIR/summary.json``, both atomic, :mod:`.report`): mean and
   standard deviation over seeds per metric and config, the paired difference to the base config,
   and reference rows (the true clips, an all-gray clip, the text-to-video base without references).

Two fine-tune runs go in parallel (``--jobs``), each with one CPU thread in its own process; the
pretraining uses ``--pretrain-threads``. Settings are stored in ``DIR/settings.json``; continuing a
folder with other settings is refused, so a table always comes from one set of settings.

``--bundle DEST`` then copies the chosen run (default: the best seed of the config with the best
mean hidden-face accuracy) with the toy encoders into ``DEST`` as the demo model of ``mvs2v demo``
(:mod:`.bundle`).
"""

from .arms import CONFIGS, TOY_DIT, AblationConfig, AblationSettings
from .bundle import bundle, pick_bundle_run
from .cli import main, run_ablation
from .files import Layout
from .report import aggregate, markdown_table
from .score import METRICS, evaluate_model, score_sample

__all__ = ["AblationConfig", "AblationSettings", "CONFIGS", "TOY_DIT", "Layout", "METRICS", "run_ablation",
           "aggregate", "markdown_table", "evaluate_model", "score_sample", "pick_bundle_run", "bundle", "main"]
