"""The mvs2v companion trainer (accelerate): Progressive View Curriculum, LoRA / proxy / MFI, adapters."""
