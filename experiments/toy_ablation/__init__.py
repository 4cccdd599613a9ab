"""The ablation of issue 11 on the hidden-colour toy worlds W1/W2 (one change per arm, several training seeds).

``python -m experiments.toy_ablation --out DIR`` (from any folder) runs, resumably:

1. **data** (``DIR/data``, :mod:`.data`): one W12 dataset (W1 and W2 mixed; ``--samples``,
   ``--data-seed``) and the toy encoders, byte-identical to the bundled demo model's.
2. **runs** (``DIR/runs/<arm>-s<seed>``, :mod:`.run`, :mod:`.workers`): every arm (:data:`.arms.ARMS`)
   fine-tunes from ``--init`` (a toy model folder; its files' sha256 are part of the settings) with
   the W12 demo recipe (:mod:`.recipes`: 600-step cosine cycles, view dropout, batch 8) and one
   change. The run's ``train.toml`` reruns it alone with ``mvs2v-train``. Training pauses every
   ``--score-every`` steps to score that checkpoint on W1 (the curve); every checkpoint is kept. A
   finished run is exported as a toy model folder (:mod:`.models`) and scored with ``mvs2v toy-bench``
   (:mod:`.scoring`; W1, and W2 for the position schemes).
3. **results** (``--results``, default ``experiments/toy_ablation/results``, :mod:`.results`):
   ``<arm>-s<seed>.json`` per run, rewritten atomically after each stage, and the table
   ``ablation_table.md`` (:mod:`.aggregate`, :mod:`.report`; also ``python -m experiments.toy_ablation
   report``).

Interrupted anywhere, the same command continues: finished runs are skipped, the trainer resumes from
the last checkpoint, the bench from its last batch. ``DIR/settings.json`` and every result file hold
the settings; another setting in the same ``DIR`` or ``--results`` is refused. ``handoff --out DIR`` writes
the unfinished runs into ``--results`` to commit, for machines that keep only the repository
(:mod:`.handoff`). ``--bundle DEST
--bundle-run base-s0`` copies a finished run as the demo model (:mod:`.bundle`).
"""

from .arms import ARMS, AblationSettings, Arm
from .bundle import bundle
from .cli import main, run_ablation
from .files import Layout
from .report import markdown, write_report

__all__ = ["ARMS", "AblationSettings", "Arm", "Layout", "bundle", "main", "run_ablation", "markdown", "write_report"]
