"""mvs2v-data: the multi-view data curation pipeline (docs/data.md).

Stages (each reads and writes one record per item in the work folder, resumable):
generate-images -> synthesize-views -> generate-videos -> caption -> extract-references -> filter,
then the trainer's manifest and a report. Layering: imports mvs2v_core only (never the toy world,
the trainer, the nodes or ComfyUI); generative back-ends plug in through the ``mvs2v.data_stages``
entry points.
"""

from __future__ import annotations
