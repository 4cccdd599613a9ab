"""Position ids of the 3D RoPE: vanilla / ts / ss / jump schemes (pure functions, CPU, fast)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.layout import ReferenceLayout, SubjectLayout, ViewSlot
from mvs2v_core.references.settings import EmptySlotMode, SchemeName, option_values
from mvs2v_core.references.positions import (
    PositionScheme,
    build_position_ids,
    reference_position_ids,
    slot_positions,
    slot_time_index,
    slot_w_offset,
    video_position_ids,
)

SETTINGS = settings(max_examples=40, deadline=None)


def make_layout(fills: list[list[bool]]) -> ReferenceLayout:
    k = len(fills[0])
    subjects = tuple(
        SubjectLayout(f"s{j}", tuple(ViewSlot(bool(x)) for x in row), frontal=0) for j, row in enumerate(fills)
    )
    return ReferenceLayout(subjects, k)


@st.composite
def layouts(draw) -> ReferenceLayout:
    n = draw(st.integers(1, 3))
    k = draw(st.integers(1, 5))
    fills = []
    for _ in range(n):
        row = draw(st.lists(st.booleans(), min_size=k, max_size=k))
        if not any(row):  # at least one filled view per subject
            row[draw(st.integers(0, k - 1))] = True
        fills.append(row)
    return make_layout(fills)


grids = st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4))
gaps = st.one_of(st.integers(0, 40).map(float), st.floats(0, 40, allow_nan=False, allow_infinity=False))
schemes = st.builds(
    PositionScheme,
    name=st.sampled_from(option_values(SchemeName)),
    gap=gaps,
    ref_gap=gaps,
    identity_gap=gaps,
    placement=st.sampled_from(["after", "before"]),
)
modes = st.sampled_from(option_values(EmptySlotMode))


def slot_rows(ids: torch.Tensor, grid, slot: int) -> torch.Tensor:
    """Rows of kept slot number `slot` (in a reference-only tensor)."""
    hw = grid[1] * grid[2]
    return ids[slot * hw : (slot + 1) * hw]


# ---- plain video and Phantom -----------------------------------------------------------------------


def test_video_ids_are_a_t_major_raster():
    grid = (2, 2, 3)
    expected = [[t, h, w] for t in range(2) for h in range(2) for w in range(3)]
    ids = video_position_ids(grid)
    assert ids.dtype == torch.float32
    assert ids.tolist() == expected
    # No layout -> video only, whatever the scheme.
    for name in option_values(SchemeName):
        assert torch.equal(build_position_ids(grid, None, PositionScheme(name)), ids)


def test_vanilla_is_phantom_contiguous():
    grid = (3, 2, 2)
    layout = make_layout([[True, True, True, True]])
    ids = build_position_ids(grid, layout, PositionScheme("vanilla"))
    expected = [[t, h, w] for t in range(3 + 4) for h in range(2) for w in range(2)]
    assert ids.tolist() == expected  # refs simply continue the video at F..F+3
    assert slot_time_index(3, make_layout([[True, False], [True, True]]), PositionScheme("vanilla")) == [
        3.0,
        4.0,
        5.0,
        6.0,
    ]


def test_ts_gap_zero_single_subject_is_vanilla():
    grid = (4, 2, 3)
    layout = make_layout([[True, True, False]])
    for mode in option_values(EmptySlotMode):
        a = build_position_ids(grid, layout, PositionScheme("ts", gap=0), mode)
        b = build_position_ids(grid, layout, PositionScheme("vanilla"), mode)
        assert torch.equal(a, b)


def test_hand_checked_examples():
    layout = make_layout([[True] * 4, [True, False, False, False]])
    assert slot_time_index(21, layout, PositionScheme("ts", gap=8)) == [29, 30, 31, 32, 41, 42, 43, 44]
    assert slot_time_index(21, layout, PositionScheme("ss", gap=8)) == [29] * 4 + [38] * 4
    assert slot_w_offset(5, layout, PositionScheme("ss")) == [0, 5, 10, 15] * 2
    assert slot_w_offset(5, layout, PositionScheme("ts")) == [0.0] * 8
    jump = PositionScheme("jump", ref_gap=9, identity_gap=24)
    assert slot_time_index(21, layout, jump) == [30, 31, 32, 33, 58, 59, 60, 61]  # 30 = ComfyUI S2V's start
    before = PositionScheme("jump", ref_gap=9, identity_gap=24, placement="before")
    assert slot_time_index(21, layout, before) == [-41, -40, -39, -38, -13, -12, -11, -10]
    assert slot_positions((21, 2, 5), layout, PositionScheme("ss"))[5] == (38.0, 5.0)


def test_fractional_gap():
    layout = make_layout([[True, True], [True, True]])
    assert slot_time_index(2, layout, PositionScheme("ts", gap=0.5)) == [2.5, 3.5, 5.0, 6.0]
    ids = reference_position_ids((2, 1, 1), layout, PositionScheme("ts", gap=0.5))
    assert ids[:, 0].tolist() == [2.5, 3.5, 5.0, 6.0]


def test_defaults_documented_values():
    s = PositionScheme()
    assert (s.name, s.gap, s.ref_gap, s.identity_gap, s.placement) == ("ts", 8.0, 9.0, 24.0, "after")


# ---- properties over random layouts ----------------------------------------------------------------


@SETTINGS
@given(layouts(), grids, schemes, modes)
def test_shape_counts_determinism_and_no_batch_dim(layout, grid, scheme, mode):
    f, h, w = grid
    ids = build_position_ids(grid, layout, scheme, mode)
    kept = layout.kept_slots(mode)
    assert ids.dim() == 2 and ids.shape == (f * h * w + len(kept) * h * w, 3)  # [L, 3], no batch dim
    assert ids.dtype == torch.float32
    assert torch.equal(ids, build_position_ids(grid, layout, scheme, mode))
    assert torch.equal(ids[: f * h * w], video_position_ids(grid))
    refs = ids[f * h * w :]
    assert torch.equal(refs, reference_position_ids(grid, layout, scheme, mode))
    # Each kept slot keeps the video's h grid and a w grid shifted by its offset.
    t_idx = slot_time_index(f, layout, scheme)
    w_off = slot_w_offset(w, layout, scheme)
    plane = video_position_ids((1, h, w))[:, 1:]
    for n, i in enumerate(kept):
        rows = slot_rows(refs, grid, n)
        assert torch.all(rows[:, 0] == torch.tensor(t_idx[i], dtype=torch.float32))
        assert torch.equal(rows[:, 1], plane[:, 0])
        assert torch.equal(rows[:, 2], plane[:, 1] + w_off[i])


@SETTINGS
@given(layouts(), grids, schemes, modes)
def test_references_never_touch_video_positions(layout, grid, scheme, mode):
    f, h, w = grid
    ids = build_position_ids(grid, layout, scheme, mode)
    refs_t = ids[f * h * w :, 0]
    # True for every scheme and every gap >= 0 (gap 0 included): the reference t range lies
    # entirely outside the video's [0, F-1], so no (t, h, w) can coincide.
    assert bool(torch.all((refs_t >= f) | (refs_t < 0)))
    video = {tuple(r) for r in ids[: f * h * w].tolist()}
    assert not video & {tuple(r) for r in ids[f * h * w :].tolist()}
    # Reference tokens never share a position with each other either.
    ref_rows = [tuple(r) for r in ids[f * h * w :].tolist()]
    assert len(set(ref_rows)) == len(ref_rows)


@SETTINGS
@given(layouts(), st.integers(1, 30), st.sampled_from(["ts", "jump"]), gaps, gaps, st.sampled_from(["after", "before"]))
def test_views_adjacent_and_subjects_one_gap_apart(layout, f, name, gap, other, placement):
    if name == "ts":
        scheme, expected_gap = PositionScheme("ts", gap=gap), gap
    else:
        scheme = PositionScheme("jump", ref_gap=other, identity_gap=gap, placement=placement)
        expected_gap = gap
    t = slot_time_index(f, layout, scheme)
    k = layout.slots_per_subject
    assert len(t) == layout.num_slots
    blocks = [t[j * k : (j + 1) * k] for j in range(layout.num_subjects)]
    for b in blocks:  # views of one subject on adjacent t
        assert b == [b[0] + v for v in range(k)]
    for a, b in zip(blocks, blocks[1:]):  # exactly `gap` empty indices between subjects
        assert b[0] - a[-1] - 1 == pytest.approx(expected_gap, abs=1e-9)
    if name == "ts":
        assert t[0] - f == pytest.approx(gap, abs=1e-9)  # gap between the video and subject 0


@SETTINGS
@given(layouts(), st.integers(1, 30), gaps, gaps)
def test_jump_ref_gap_after_and_before(layout, f, ref_gap, identity_gap):
    after = slot_time_index(f, layout, PositionScheme("jump", ref_gap=ref_gap, identity_gap=identity_gap))
    before = slot_time_index(
        f, layout, PositionScheme("jump", ref_gap=ref_gap, identity_gap=identity_gap, placement="before")
    )
    assert after[0] - (f - 1) - 1 == pytest.approx(ref_gap, abs=1e-9)
    assert all(t < 0 for t in before)
    assert 0 - before[-1] - 1 == pytest.approx(ref_gap, abs=1e-9)  # exactly ref_gap from video t = 0
    assert before == sorted(before)
    # Same shape of block, only shifted.
    shift = after[0] - before[0]
    assert [a - b for a, b in zip(after, before)] == pytest.approx([shift] * len(after), abs=1e-6)


@SETTINGS
@given(layouts(), st.integers(1, 30), st.integers(1, 6), gaps)
def test_ss_views_tile_along_w_at_one_t(layout, f, width, gap):
    scheme = PositionScheme("ss", gap=gap)
    t = slot_time_index(f, layout, scheme)
    off = slot_w_offset(width, layout, scheme)
    k = layout.slots_per_subject
    for j in range(layout.num_subjects):
        assert len(set(t[j * k : (j + 1) * k])) == 1  # one shared t per subject
        assert off[j * k : (j + 1) * k] == [v * width for v in range(k)]  # disjoint w blocks
        assert t[j * k] == pytest.approx(f + gap + j * (1 + gap), abs=1e-9)


@SETTINGS
@given(layouts(), grids, schemes)
def test_drop_removes_exactly_empty_rows(layout, grid, scheme):
    hw = grid[1] * grid[2]
    proxy = reference_position_ids(grid, layout, scheme, "proxy")
    gray = reference_position_ids(grid, layout, scheme, "gray")
    drop = reference_position_ids(grid, layout, scheme, "drop")
    assert torch.equal(proxy, gray)
    assert proxy.shape[0] == layout.num_slots * hw
    filled = [i for i, x in enumerate(layout.filled) if x]
    expected = torch.cat([proxy[i * hw : (i + 1) * hw] for i in filled])
    assert torch.equal(drop, expected)  # bit-identical rows, empty slots gone


def test_empty_layout_has_no_reference_rows():
    layout = ReferenceLayout((), 2)
    ids = build_position_ids((2, 2, 2), layout, PositionScheme("jump"))
    assert ids.shape == (8, 3)


# ---- scheme object -------------------------------------------------------------------------------


@SETTINGS
@given(schemes)
def test_dict_round_trip(scheme):
    d = scheme.to_dict()
    assert PositionScheme.from_dict(json.loads(json.dumps(d))) == scheme


def test_from_dict_defaults_and_normalisation():
    assert PositionScheme.from_dict({"name": "TS"}) == PositionScheme("ts")
    assert PositionScheme.from_dict({"name": "jump", "ref_gap": "3"}).ref_gap == 3.0
    assert PositionScheme(" Jump ", placement="BEFORE").placement == "before"


def test_canonical_ignores_unused_fields():
    assert PositionScheme("vanilla", gap=3).canonical() == PositionScheme("vanilla", gap=99).canonical()
    assert PositionScheme("ts", gap=3, ref_gap=1).canonical() == PositionScheme("ts", gap=3).canonical()
    assert PositionScheme("ts", gap=3).canonical() != PositionScheme("ts", gap=4).canonical()
    j = PositionScheme("jump", gap=1, ref_gap=2, identity_gap=3, placement="before")
    assert j.canonical() == PositionScheme("jump", ref_gap=2, identity_gap=3, placement="before")


# ---- bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"name": "rope3"}, ["rope3", "vanilla", "jump"]),
        ({"name": "ts", "gap": -1}, ["gap", "-1", ">= 0"]),
        ({"name": "jump", "ref_gap": -0.5}, ["ref_gap", ">= 0"]),
        ({"name": "jump", "identity_gap": -2}, ["identity_gap", ">= 0"]),
        ({"name": "ts", "gap": float("nan")}, ["gap", "finite"]),
        ({"name": "ts", "gap": float("inf")}, ["gap", "finite"]),
        ({"name": "ts", "gap": "wide"}, ["gap", "wide"]),
        ({"name": "jump", "placement": "middle"}, ["middle", "after", "before"]),
    ],
)
def test_bad_scheme_values(kwargs, words):
    with pytest.raises(MVS2VError) as info:
        PositionScheme(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_from_dict_rejects_unknown_keys_and_non_mappings():
    with pytest.raises(MVS2VError, match="delta"):
        PositionScheme.from_dict({"name": "ts", "delta": 8})
    with pytest.raises(MVS2VError, match="mapping"):
        PositionScheme.from_dict(["ts"])  # type: ignore[arg-type]


def test_bad_empty_slot_mode_and_grid():
    layout = make_layout([[True, False]])
    with pytest.raises(MVS2VError, match="skip.*proxy"):
        build_position_ids((2, 2, 2), layout, PositionScheme("ts"), "skip")
    with pytest.raises(MVS2VError, match="skip"):
        build_position_ids((2, 2, 2), None, PositionScheme("ts"), "skip")
    with pytest.raises(MVS2VError, match="skip"):
        reference_position_ids((2, 2, 2), layout, PositionScheme("ts"), "skip")
    for grid in [(0, 2, 2), (2, 2), (2, 2.5, 2), (2, -1, 3)]:
        with pytest.raises(MVS2VError, match="grid"):
            build_position_ids(grid, layout, PositionScheme("ts"))
    with pytest.raises(MVS2VError, match="latent frame"):
        slot_time_index(0, layout, PositionScheme("ts"))
