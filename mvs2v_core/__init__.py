"""mvs2v_core: multi-view subject-to-video generation on Wan 2.1 / 2.2 DiTs.

Standalone PyTorch package (no ComfyUI imports): a Wan-compatible DiT that loads real Wan and
Phantom-Wan checkpoints, reference layouts and position schemes (vanilla, TS-RoPE, SS-RoPE,
Jump-RoPE), proxy slots, Multi-level Feature Injection, the adapter file format, a rectified-flow
sampler and the ``mvs2v`` CLI. Heavy modules are imported lazily by their users.
"""

__version__ = "0.1.0"
