"""Explicit weight downloads: the preset table (:mod:`.presets`), the verified download
(:mod:`.download`) and the ``mvs2v models`` command (:mod:`.command`).

Importing this package stays light: huggingface-hub is imported only when a download starts.
"""
