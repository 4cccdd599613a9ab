"""Research runs over the trainer and pipeline APIs (``python -m experiments.<name>`` from the repository root).

Not installed and not a library: experiments may import ``mvs2v_core``, ``mvs2v_toy`` and
``mvs2v_train``; nothing imports them (see ``docs/architecture.md``).
"""
