"""What the ablation compares: the arms (one change each to the base) and the settings that make a table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.settings import SlotAnchor, option_values

BASE_CHANGE = "base: TS-RoPE gap 8, proxy empty slots, multi-view with view dropout, no MFI"


@dataclass(frozen=True)
class Arm:
    """One ablation arm: what it changes relative to the base.

    Attributes:
        name: the arm's name (``base``, ``single``, ``vanilla``...).
        group: the issue's item it answers (``a`` views, ``b`` schemes, ``c`` empty slots, ``d`` MFI,
            ``e`` TS gap; ``f`` cached references, issue 12; ``g`` slots anchored on the start view;
            ``h`` the reference alignment loss).
        change: one line for the table.
        scheme, gap, empty_slot_mode, ref_timestep, ref_attention, slot_anchor: the trainer's ``[references]``.
        views: ``dropout`` (multi-view with view dropout) or ``single`` (the start view only).
        mfi: trains the MFI projector on the toy vision encoder's features.
        align: the weight of the trainer's reference alignment loss (``[align]``, RefAlign-style: the
            reference tokens' hidden states aligned to the toy vision encoder's patch features); 0: off.
        w2: also scored on W2 (the position schemes' causal crosstalk).
    """

    name: str
    group: str
    change: str
    scheme: str = "ts"
    gap: float = 8.0
    empty_slot_mode: str = "proxy"
    ref_timestep: str = "same"
    ref_attention: str = "full"
    slot_anchor: str = "canonical"
    views: str = "dropout"
    mfi: bool = False
    align: float = 0.0
    w2: bool = False

    @property
    def vision(self) -> bool:
        """Trains on the toy vision encoder's features (MFI or the alignment loss): the cache holds them."""
        return self.mfi or self.align > 0

    @property
    def own_row(self) -> str:
        """The bench row the arm is judged on: what it was trained with (all views, or the start view)."""
        return "single" if self.views == "single" else "multi"

    def bench_rows(self, world: str) -> tuple[str, ...]:
        """The bench rows scored for this arm on ``world`` (``copy`` costs no generation)."""
        if world == "w2":
            return ("multi", "none", "copy") if self.name == "base" else ("multi", "copy")
        if self.name == "base":
            return ("multi", "single", "none", "copy")
        if self.views == "single":
            return ("single", "multi", "copy")
        return ("multi", "copy")

    def training(self) -> tuple[Any, ...]:
        """What changes the trained model (not the name, the table line or the W2 scoring)."""
        return (self.scheme, self.gap, self.empty_slot_mode, self.ref_timestep, self.ref_attention,
                self.slot_anchor, self.views, self.mfi, self.align)

    def worlds(self) -> tuple[str, ...]:
        """The benched worlds, in order: W2 first where scored, because the scheme comparison reads it and a
        session that ends mid-bench should keep the number the arm exists for."""
        return ("w2", "w1") if self.w2 else ("w1",)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["slot_anchor"] == "canonical":
            del d["slot_anchor"]  # result files written before the option existed still match
        if not d["align"]:
            del d["align"]
        return d


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("base", "base", BASE_CHANGE, w2=True),
    Arm("single", "a", "single view: the start view only, in training and evaluation", views="single"),
    Arm("vanilla", "b", "position scheme vanilla (Phantom: slots continue the video's time axis)", scheme="vanilla",
        w2=True),
    Arm("ss", "b", "position scheme SS-RoPE (views side by side on the w axis)", scheme="ss", w2=True),
    Arm("jump", "b", "position scheme Jump-RoPE (HarmoView)", scheme="jump", w2=True),
    Arm("gray", "c", "empty slots = mid-gray latent", empty_slot_mode="gray"),
    Arm("drop", "c", "empty slots dropped", empty_slot_mode="drop"),
    Arm("mfi", "d", "with MFI (frontal-view features of the toy vision encoder after the text)", mfi=True),
    # Issue 11, item 3 (optional): RefAlign's training-only alignment loss, REPA's weight 0.5.
    Arm("align", "h", "reference alignment loss 0.5 (block 1's reference tokens -> the toy vision encoder's "
        "patch features)", align=0.5),
    *(Arm(f"gap{g}", "e", f"TS-RoPE gap {g} (base: 8)", gap=float(g)) for g in (1, 4, 16, 32)),
    # Issue 12: cached references need timestep 0, so "zero" separates the timestep from the attention mode.
    Arm("zero", "f", "reference tokens at timestep 0 (full attention)", ref_timestep="zero"),
    Arm("cached", "f", "cached references: timestep 0, references attend only to references, no text",
        ref_timestep="zero", ref_attention="cached"),
    # The start view given by the references (slot 0 = the frontal view) instead of read from the caption.
    Arm("anchor", "g", "slots anchored on the start view (slot 0 = the frontal view, the others by their angle "
        "from it)", slot_anchor="frontal", w2=True),
)}


def parse_arms(text: str) -> list[str]:
    """``--arms`` (comma-separated names) checked against :data:`ARMS`, in the order given."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ARMS]
    if unknown or not names:
        raise MVS2VError(f"--arms: unknown {unknown or 'empty list'}; choose from {','.join(ARMS)}")
    return list(dict.fromkeys(names))


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """Comma-separated non-negative integers."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MVS2VError(f"{option} {text!r} must be comma-separated integers, e.g. 0,1") from None
    if not seeds or min(seeds) < 0:
        raise MVS2VError(f"{option} {text!r} needs at least one seed, all >= 0")
    return list(dict.fromkeys(seeds))


SLOT_ANCHORS = tuple(option_values(SlotAnchor))  # core's values: canonical, frontal


def parse_leg(text: str) -> tuple[tuple[str, ...], int]:
    """``"w0+w12:2400"`` -> (("w0", "w12"), 2400): one leg of a schedule."""
    worlds, _, steps = text.partition(":")
    names = tuple(w.strip() for w in worlds.split("+") if w.strip())
    if not names or not steps.strip().isdigit() or int(steps) < 1:
        raise MVS2VError(f"--schedule leg {text!r} must look like WORLD+WORLD:STEPS with STEPS >= 1, e.g. w0+w12:2400")
    return names, int(steps)


def parse_schedule(text: str) -> tuple[str, ...]:
    """``--schedule`` (comma-separated legs), each checked and written back in one spelling."""
    legs = [parse_leg(leg) for leg in text.split(",") if leg.strip()]
    return tuple(f"{'+'.join(worlds)}:{steps}" for worlds, steps in legs)


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-s{seed}"


def parse_run_name(name: str, option: str = "--bundle-run") -> tuple[Arm, int]:
    """``"base-s0"`` -> (the ``base`` arm, seed 0); ``option`` names the flag in the error."""
    arm, _, seed = name.rpartition("-s")
    if arm not in ARMS or not seed.isdigit():
        raise MVS2VError(f"{option} {name!r} must look like ARM-sSEED with ARM one of {','.join(ARMS)}, e.g. base-s0")
    return ARMS[arm], int(seed)


@dataclass(frozen=True)
class AblationSettings:
    """Everything that changes the numbers (stored in ``--out``/settings.json and in every result file).

    The recipe is the one of the bundled W12 demo model (``docs/ablation.md``): first
    ``curriculum_steps`` on the calibration world ``curriculum_world`` (the hidden sides always come
    round in the same order, so reference use is learnt there first), then ``steps`` on ``world``, both
    in ``cycle_steps``-step cosine cycles. ``init_sha256`` pins the init model's files.

    A *graded* curriculum adds, after the calibration world, ``graded_steps`` for each of
    ``graded_worlds`` in turn, every one trained together with the worlds before it (so a new world
    does not erase the skill of the earlier ones); ``keep_mix`` keeps them all in the main stage too.
    Graded world ``i`` has its own dataset (``curriculum_samples`` samples, seed
    ``curriculum_data_seed + 1 + i``).

    A *schedule* (``--schedule``, e.g. ``w0:2400,w0+w0s+w0sd+w12:2086,w12:2400``) replaces that sequence
    with explicit legs, each ``WORLD+WORLD:STEPS`` on the rows of those worlds (``w2``: the main world's
    two-object rows); ``curriculum_steps``, ``graded_steps``, ``steps`` and ``keep_mix`` are then 0/unused,
    and the datasets are still those of the calibration, graded and main worlds. ``slot_anchor`` is the
    base's slot anchor, so every arm changes one thing relative to an anchored base when it is ``frontal``.
    """

    samples: int = 6000
    data_seed: int = 11
    world: str = "w12"
    frames: int = 9
    val_fraction: float = 0.02
    curriculum_world: str = "w0"
    curriculum_samples: int = 4000
    curriculum_data_seed: int = 21
    curriculum_steps: int = 3000
    graded_worlds: tuple[str, ...] = ()
    graded_steps: int = 0
    keep_mix: bool = False
    steps: int = 3000
    cycle_steps: int = 600
    learning_rate: float = 5e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    dropout_prob: float = 0.3
    batch_size: int = 8
    timestep_shift: float = 3.0
    checkpoint_every: int = 200
    bench_scenes: int = 64
    bench_seeds: tuple[int, ...] = (0, 1)
    curve_scenes: int = 16
    eval_seed: int = 1000
    sample_steps: int = 20
    sample_shift: float = 3.0
    solver: str = "unipc"
    ref_scale: float = 2.0
    text_scale: float = 3.0
    schedule: tuple[str, ...] = ()
    slot_anchor: str = "canonical"
    init_sha256: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bench_seeds", tuple(int(s) for s in self.bench_seeds))
        object.__setattr__(self, "graded_worlds", tuple(str(w) for w in self.graded_worlds))
        object.__setattr__(self, "schedule", tuple(str(leg) for leg in self.schedule))
        positive = ("samples", "frames", "cycle_steps", "batch_size", "checkpoint_every", "bench_scenes",
                    "curve_scenes", "sample_steps", *(() if self.schedule else ("steps",)))
        bad = [k for k in positive if int(getattr(self, k)) < 1]
        bad += [k for k in ("curriculum_steps", "curriculum_samples") if int(getattr(self, k)) < 0]
        if bad:
            raise MVS2VError(f"settings {', '.join(bad)} must be at least 1")
        if self.slot_anchor not in SLOT_ANCHORS:
            raise MVS2VError(f"--slot-anchor {self.slot_anchor!r}: use one of {', '.join(SLOT_ANCHORS)}")
        self._check_graded()
        self._check_schedule()

    def _check_schedule(self) -> None:
        if not self.schedule:
            return
        if self.curriculum_steps or self.graded_steps or self.steps or self.keep_mix:
            raise MVS2VError("a schedule replaces --curriculum-steps, --graded-steps, --steps and --keep-mix: "
                             "leave them out (they are set to 0)")
        allowed = (*self.dataset_worlds, *(("w2",) if self.world == "w12" else ()))
        for worlds, _ in self.legs:
            unknown = [w for w in worlds if w not in allowed]
            if unknown:
                raise MVS2VError(f"--schedule: {','.join(unknown)} has no dataset here; a leg may name "
                                 f"{'+'.join(allowed)} (the calibration world, --graded worlds, the main world)")

    @property
    def legs(self) -> list[tuple[tuple[str, ...], int]]:
        """The schedule as ``[(worlds, steps), ...]``; empty without one."""
        return [parse_leg(leg) for leg in self.schedule]

    @property
    def dataset_worlds(self) -> tuple[str, ...]:
        """Every world with a dataset: the calibration and graded worlds (when there is a curriculum or a
        schedule), then the main world."""
        return (*self.curriculum_worlds, self.world)

    def _check_graded(self) -> None:
        if not self.graded_worlds:
            return
        from mvs2v_toy.world import WORLDS

        worlds = [self.curriculum_world, *self.graded_worlds, self.world]
        unknown = [w for w in self.graded_worlds if w not in WORLDS]
        if unknown:
            raise MVS2VError(f"--graded {','.join(unknown)}: unknown toy world; use some of {', '.join(WORLDS)}")
        if len(set(worlds)) != len(worlds):
            raise MVS2VError(f"--graded {','.join(self.graded_worlds)} must name worlds other than the calibration "
                             f"world {self.curriculum_world} and the main world {self.world}, each once")
        if not self.schedule and (not self.curriculum_steps or self.graded_steps < 1):
            raise MVS2VError("a graded curriculum needs --curriculum-steps and --graded-steps of at least 1")

    @property
    def curriculum_worlds(self) -> tuple[str, ...]:
        """The calibration world and the graded ones (empty without a curriculum or a schedule)."""
        return (self.curriculum_world, *self.graded_worlds) if self.curriculum_steps or self.schedule else ()

    @property
    def total_steps(self) -> int:
        """Optimizer steps of a run: the schedule's legs, or the curriculum stages, then the main world."""
        if self.schedule:
            return sum(steps for _, steps in self.legs)
        return self.curriculum_steps + len(self.graded_worlds) * self.graded_steps + self.steps

    def arm(self, arm: Arm) -> Arm:
        """``arm`` on this base: the base's slot anchor unless the arm changes the anchor itself."""
        if arm.slot_anchor != "canonical" or self.slot_anchor == "canonical":
            return arm
        return replace(arm, slot_anchor=self.slot_anchor)

    def redundant_arms(self) -> tuple[str, ...]:
        """Arms that train exactly as the base does under these settings (``anchor`` on an anchored base)."""
        base = self.arm(ARMS["base"]).training()
        return tuple(a.name for a in ARMS.values() if a.name != "base" and self.arm(a).training() == base)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["bench_seeds"] = list(self.bench_seeds)
        d["graded_worlds"] = list(self.graded_worlds)
        d["schedule"] = list(self.schedule)
        # left out at their defaults, so settings written before these options existed still match
        if not d["schedule"]:
            del d["schedule"]
        if d["slot_anchor"] == "canonical":
            del d["slot_anchor"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "AblationSettings":
        known = {f.name for f in fields(cls)}
        d = {"curriculum_steps": 0, **d}  # written before the curriculum existed: none
        unknown = sorted(set(d) - known)
        if unknown:
            raise MVS2VError(f"stored settings have unknown keys {unknown}: they were written by another version "
                             "of the runner; use another --out")
        return cls(**d)

    def differences(self, other: "AblationSettings") -> dict[str, tuple[Any, Any]]:
        """``{name: (self's value, other's value)}`` for every setting that differs."""
        a, b = self.to_json(), other.to_json()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}
