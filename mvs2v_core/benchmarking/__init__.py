"""``mvs2v bench``: models or schemes side by side on a case file (docs/evaluation.md, Benchmark runner).

:mod:`.cases` reads and checks the case file, :mod:`.backends` generates through the pipeline API or a
running ComfyUI (:mod:`mvs2v_core.comfyui_http`), :mod:`.runner` scores and caches each (model, case),
:mod:`.leaderboard` writes the CSV / Markdown leaderboard and the plots.
"""
