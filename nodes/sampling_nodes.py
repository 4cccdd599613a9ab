"""Sampling nodes: Flow Sampler (all-in-one), Flow Solver (SAMPLER) and Reference Guider (GUIDER)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..mvs2v_core.errors import MVS2VError
from ..mvs2v_core.sampling.schedule import flow_sigmas
from ..mvs2v_core.sampling.solvers import SOLVERS, get_solver
from . import compat
from .flow import ThreePassGuider, flow_solver_function

SOLVER_TOOLTIP = "ODE solver: unipc (2nd-order multistep, Wan's default), heun (2 model calls a step), euler (1st order)"
REF_SCALE_TOOLTIP = "Reference guidance: how strongly the video follows the references (Phantom: 5.0; 1.0 = off)"
TEXT_SCALE_TOOLTIP = "Text guidance: how strongly the video follows the prompt (Phantom: 7.5; 1.0 = off)"


def _guider(model, positive, negative, ref_scale, text_scale) -> ThreePassGuider:
    guider = ThreePassGuider(model)
    guider.set_conds(positive, negative)
    guider.set_scales(ref_scale, text_scale)
    return guider


class FlowSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VFlowSampler",
            display_name="MV-S2V Flow Sampler",
            category="mvs2v/sampling",
            description=(
                "Rectified-flow sampling with mvs2v's solvers and Phantom's three-pass guidance (no references + "
                "negative, references + negative, references + prompt). Shows progress and latent previews."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model from Apply MV-S2V (for Wan2.2 A14B: the high-noise expert)"),
                io.Conditioning.Input("positive", tooltip="The prompt's conditioning (after MV-S2V MFI Encode when MFI is used)"),
                io.Conditioning.Input("negative", tooltip="The negative prompt's conditioning (after MV-S2V MFI Encode when MFI is used)"),
                io.Latent.Input("latent_image", tooltip="The empty video latent (EmptyHunyuanLatentVideo for Wan2.1, Wan22ImageToVideoLatent for Wan2.2 5B)"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Noise seed"),
                io.Int.Input("steps", default=30, min=1, max=1000, tooltip="Solver steps"),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.1, tooltip=(
                    "Schedule shift (5 for 720p, 3 for 480p Wan2.1); 0 = use the model's own shift (ModelSamplingSD3)")),
                io.Combo.Input("solver", options=sorted(SOLVERS), default="unipc", tooltip=SOLVER_TOOLTIP),
                io.Float.Input("ref_scale", default=5.0, min=0.0, max=30.0, step=0.1, tooltip=REF_SCALE_TOOLTIP),
                io.Float.Input("text_scale", default=7.5, min=0.0, max=30.0, step=0.1, tooltip=TEXT_SCALE_TOOLTIP),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01, tooltip="1.0 starts from pure noise; less refines the input latent"),
                io.Model.Input("low_noise_model", optional=True, tooltip=(
                    "Wan2.2 A14B: the low-noise expert (also through Apply MV-S2V); it takes over below the boundary")),
                io.Float.Input("boundary", default=0.875, min=0.0, max=1.0, step=0.001, optional=True, tooltip=(
                    "Wan2.2 A14B: sigma where the low-noise expert takes over (0.875, Wan's own setting for the T2V experts)")),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, shift, solver, ref_scale, text_scale,
                denoise, low_noise_model=None, boundary=0.875) -> io.NodeOutput:
        latent = compat.fix_latent_channels(model, latent_image["samples"])
        noise = compat.prepare_noise(latent, seed, latent_image.get("batch_index"))
        sigmas = flow_sigmas(steps, shift if shift > 0 else compat.model_shift(model), denoise=denoise).float()
        preview = compat.preview_callback(model, steps)
        mask = latent_image.get("noise_mask")
        stages = [(model, sigmas, 0)]
        if low_noise_model is not None:
            if bool(compat.reference_wrappers(model)) != bool(compat.reference_wrappers(low_noise_model)):
                raise MVS2VError(
                    "only one of the two Wan2.2 A14B experts went through Apply MV-S2V: apply it to both (the same "
                    "encoded references), or the other expert samples its steps without the references"
                )
            switch = int((sigmas[:-1] >= boundary).sum())  # steps that start at or above the boundary
            if switch == 0:
                stages = [(low_noise_model, sigmas, 0)]
            elif switch < steps:
                stages = [(model, sigmas[: switch + 1], 0), (low_noise_model, sigmas[switch:], switch)]
        # One solver for the whole schedule: the second expert continues the first one's trajectory
        # (UniPC's history and corrector carry over the switch) instead of restarting the solver.
        trajectory = get_solver(solver)
        trajectory.reset(sigmas.double().clamp(0.0, 1.0))
        samples = latent
        for i, (stage_model, stage_sigmas, offset) in enumerate(stages):
            sampler = compat.make_sampler(flow_solver_function(solver, trajectory, offset))
            guider = _guider(stage_model, positive, negative, ref_scale, text_scale)
            stage_noise = noise if i == 0 else torch.zeros_like(noise)

            def callback(step, x0, x, total, _offset=offset):
                preview(step + _offset, x0, x, steps)

            samples = guider.sample(stage_noise, samples, sampler, stage_sigmas, denoise_mask=mask,
                                    callback=callback, disable_pbar=True, seed=seed)
            samples = samples.to(device=compat.intermediate_device(), dtype=torch.float32)
        out = dict(latent_image)
        out.pop("downscale_ratio_spacial", None)
        out["samples"] = samples
        return io.NodeOutput(out)


class FlowSolver(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VFlowSolver",
            display_name="MV-S2V Flow Solver",
            category="mvs2v/sampling",
            description="mvs2v's rectified-flow solvers as a SAMPLER for SamplerCustomAdvanced (Wan models only).",
            inputs=[io.Combo.Input("solver", options=sorted(SOLVERS), default="unipc", tooltip=SOLVER_TOOLTIP)],
            outputs=[io.Sampler.Output(display_name="sampler")],
        )

    @classmethod
    def execute(cls, solver) -> io.NodeOutput:
        return io.NodeOutput(compat.make_sampler(flow_solver_function(solver)))


class ReferenceGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MVS2VReferenceGuider",
            display_name="MV-S2V Reference Guider",
            category="mvs2v/sampling",
            description=(
                "Phantom's three-pass reference/text guidance as a GUIDER for SamplerCustomAdvanced: works with any "
                "sampler and sigmas node (split sigmas for the two Wan2.2 A14B experts)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model from Apply MV-S2V"),
                io.Conditioning.Input("positive", tooltip="The prompt's conditioning"),
                io.Conditioning.Input("negative", tooltip="The negative prompt's conditioning"),
                io.Float.Input("ref_scale", default=5.0, min=0.0, max=30.0, step=0.1, tooltip=REF_SCALE_TOOLTIP),
                io.Float.Input("text_scale", default=7.5, min=0.0, max=30.0, step=0.1, tooltip=TEXT_SCALE_TOOLTIP),
            ],
            outputs=[io.Guider.Output(display_name="guider")],
        )

    @classmethod
    def execute(cls, model, positive, negative, ref_scale, text_scale) -> io.NodeOutput:
        if ref_scale < 0 or text_scale < 0:
            raise MVS2VError("guidance scales must be >= 0")
        return io.NodeOutput(_guider(model, positive, negative, ref_scale, text_scale))
