"""Socket types the MV-S2V nodes pass between each other (names prefixed MVS2V_)."""

from __future__ import annotations

from comfy_api.latest import io

Subject = io.Custom("MVS2V_SUBJECT")
ReferenceSet = io.Custom("MVS2V_REFERENCE_SET")
EncodedReferences = io.Custom("MVS2V_ENCODED_REFERENCES")
Adapter = io.Custom("MVS2V_ADAPTER")
ToyTextEncoder = io.Custom("MVS2V_TOY_TEXT_ENCODER")
ToyDemo = io.Custom("MVS2V_TOY_DEMO")
ToyScene = io.Custom("MVS2V_TOY_SCENE")

MAX_SUBJECT_INPUTS = 16
