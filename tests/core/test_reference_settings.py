"""The reference-settings contract and the shared reference-token plan."""

from __future__ import annotations

import json

import pytest
import torch

from mvs2v_core.errors import MVS2VError
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.settings import (
    EmptySlotMode,
    Placement,
    PositionScheme,
    ReferenceSettings,
    RefTimestep,
    SchemeName,
    SlotAnchor,
)
from mvs2v_core.references.tokens import ReferenceTokenPlan, extend_timesteps, proxy_slot_table

LAYOUT = ReferenceLayout.build([["front", "back"], [None]], 4)  # filled: a0 a2 b0


def test_defaults_live_in_one_place_and_are_documented():
    d = ReferenceSettings()
    assert (d.slots_per_subject, d.scheme.name, d.scheme.gap, d.empty_slot_mode, d.ref_timestep) == (
        4, SchemeName.TS, 8.0, EmptySlotMode.GRAY, RefTimestep.SAME)
    assert PositionScheme() == d.scheme  # the scheme's own default is the contract's


def test_options_are_enums_that_compare_and_serialise_as_strings():
    s = ReferenceSettings(2, "JUMP ", " Proxy", "zero")
    assert s.scheme.name is SchemeName.JUMP and s.empty_slot_mode == "proxy" and s.ref_timestep == "zero"
    assert json.loads(json.dumps(s.to_dict())) == s.to_dict()
    assert s.to_dict()["position_scheme"]["name"] == "jump" and type(s.to_dict()["empty_slot_mode"]) is str


@pytest.mark.parametrize("field,value,needle", [
    ("empty_slot_mode", "blur", "empty-slot mode 'blur' is unknown: use one of proxy, gray, drop"),
    ("ref_timestep", "later", "reference timestep mode 'later' is unknown: use one of same, zero"),
    ("scheme", "spiral", "position scheme 'spiral' is unknown: use one of vanilla, ts, ss, jump"),
    ("slots_per_subject", 0, "slots per subject must be a whole number from 1 to 16"),
])
def test_bad_values_give_one_line_naming_the_allowed_values(field, value, needle):
    with pytest.raises(MVS2VError) as e:
        ReferenceSettings(**{field: value})
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_round_trip_and_overrides():
    s = ReferenceSettings(3, PositionScheme("jump", ref_gap=4, identity_gap=30, placement="before"), "drop", "zero")
    assert ReferenceSettings.from_dict(s.to_dict()) == s
    o = s.with_overrides(gap=None, identity_gap=12, empty_slot_mode="gray")
    assert o.scheme.identity_gap == 12 and o.scheme.placement is Placement.BEFORE and o.empty_slot_mode == "gray"
    assert s.with_overrides(scheme="ts").scheme == PositionScheme("ts", ref_gap=4, identity_gap=30, placement="before")
    assert s.with_overrides() == s
    with pytest.raises(MVS2VError, match="unknown reference setting"):
        s.with_overrides(colour="red")


def test_slot_anchor_defaults_to_canonical_and_is_written_only_when_set():
    assert ReferenceSettings().slot_anchor is SlotAnchor.CANONICAL
    assert "slot_anchor" not in ReferenceSettings().to_dict()  # adapters made before the option stay byte-equal
    s = ReferenceSettings(slot_anchor=" Frontal")
    assert s.to_dict()["slot_anchor"] == "frontal" and ReferenceSettings.from_dict(s.to_dict()) == s
    assert "anchored on the frontal view" in s.describe()
    assert ReferenceSettings().with_overrides(slot_anchor="frontal") == s
    with pytest.raises(MVS2VError, match="slot anchor 'start' is unknown: use one of canonical, frontal"):
        ReferenceSettings(slot_anchor="start")


def _slot_sources(layout: ReferenceLayout) -> list[list[int | None]]:
    return [[v.source for v in s.slots] for s in layout.subjects]


def test_frontal_anchor_turns_the_slots_to_the_frontal_view():
    views = [["front", "left", "back", "right"], ["back", "right"]]
    canonical = ReferenceLayout.build(views, 4, frontal=[2, 0])
    assert _slot_sources(canonical) == [[0, 1, 2, 3], [None, None, 0, 1]]
    anchored = ReferenceLayout.build(views, 4, frontal=[2, 0], slot_anchor="frontal")
    # Slot k is 90k degrees on from the frontal view: back, right, front, left; the second subject's
    # back view moves to slot 0 and its right view (90 degrees on) to slot 1.
    assert _slot_sources(anchored) == [[2, 3, 0, 1], [0, 1, None, None]]
    assert [s.frontal for s in anchored.subjects] == [0, 0]
    assert [v.yaw for v in anchored.subjects[0].slots] == [180.0, 270.0, 0.0, 90.0]  # the given yaws are kept
    # Anchored on a front view it is the canonical layout; odd angles go to the nearest turned slot.
    assert ReferenceLayout.build(views[:1], 4, frontal=[0], slot_anchor="frontal") == ReferenceLayout.build(views[:1], 4)
    odd = ReferenceLayout.build([[100.0, 200.0]], 4, frontal=[0], slot_anchor="frontal")
    assert _slot_sources(odd) == [[0, 1, None, None]]


def test_frontal_anchor_with_an_unlabelled_frontal_view_counts_it_as_front():
    layout = ReferenceLayout.build([[None, "left", "back"]], 4, frontal=[0], slot_anchor="frontal")
    assert _slot_sources(layout) == [[0, 1, 2, None]]
    layout = ReferenceLayout.build([["left", None]], 4, frontal=[1], slot_anchor="frontal")
    assert _slot_sources(layout) == [[1, 0, None, None]]


def test_canonical_ignores_fields_the_scheme_does_not_use():
    assert PositionScheme("jump", gap=3).canonical() == PositionScheme("jump").canonical()
    assert PositionScheme("ts", gap=3).canonical() != PositionScheme("ts").canonical()
    assert PositionScheme("jump").describe() == "'jump' (ref_gap=9, identity_gap=24, placement=after)"


def test_extend_timesteps_shapes_and_values():
    t = torch.tensor([800.0, 200.0])
    assert extend_timesteps(t, 3, 4, 2, RefTimestep.SAME) is t
    z = extend_timesteps(t, 3, 4, 2, RefTimestep.ZERO)
    assert z.tolist() == [[800, 800, 800, 0, 0], [200, 200, 200, 0, 0]]
    per_frame = torch.tensor([[900.0, 500.0, 100.0]])
    assert extend_timesteps(per_frame, 3, 4, 2, RefTimestep.SAME).tolist() == [[900, 500, 100, 900, 900]]
    per_token = torch.arange(12.0)[None]
    out = extend_timesteps(per_token, 3, 4, 2, RefTimestep.ZERO)
    assert out.shape == (1, 20) and out[0, 12:].eq(0).all()
    with pytest.raises(MVS2VError, match="match neither"):
        extend_timesteps(torch.zeros(1, 5), 3, 4, 2, RefTimestep.SAME)
    assert extend_timesteps(t, 3, 4, 0, RefTimestep.ZERO) is t


def test_proxy_slot_table_and_plan():
    layout = ReferenceLayout.build([["front", "back"], [None]], 4)
    proxy = ReferenceSettings(empty_slot_mode="proxy")
    assert proxy_slot_table(layout, proxy) == [(1, 1), (3, 3), (5, 1), (6, 2), (7, 3)]
    assert proxy_slot_table(layout, ReferenceSettings(empty_slot_mode="gray")) == []
    plan = ReferenceTokenPlan.build((2, 1, 2), layout, ReferenceSettings(empty_slot_mode="drop"))
    assert plan.kept == (0, 2, 4) and plan.num_reference_tokens == 6 and plan.num_video_tokens == 4
    assert plan.position_ids().shape == (10, 3)
    with pytest.raises(MVS2VError, match="slots per subject but the settings say"):
        ReferenceTokenPlan.build((2, 1, 2), layout, ReferenceSettings(slots_per_subject=3))


def test_fill_proxies_covers_each_empty_slot_and_carries_gradients():
    plan = ReferenceTokenPlan.build((1, 1, 2), LAYOUT, ReferenceSettings(empty_slot_mode="proxy"))
    tokens = torch.zeros(2, 2 + 8 * 2, 3)
    proxy = torch.arange(12.0).view(4, 3).requires_grad_()
    out = plan.fill_proxies(tokens, proxy)
    for pos, view in plan.proxy_fill:
        start = 2 + pos * 2
        assert torch.equal(out[:, start:start + 2], proxy[view].detach().expand(2, 2, 3))
    assert out[:, :2].eq(0).all() and out[:, 2:4].eq(0).all()  # video and filled slot 0 untouched
    out.sum().backward()
    # view 1 is empty in both subjects, view 2 in one, view 0 in none (2 samples x 2 tokens per slot)
    assert proxy.grad[1].eq(8).all() and proxy.grad[2].eq(4).all() and proxy.grad[0].eq(0).all()


def test_the_pipeline_places_views_with_the_settings_slot_anchor():
    from mvs2v_core.pipeline.generate import SubjectInput, layout_for

    subject = SubjectInput("cube", [None, None, None], ["front", "left", "back"], frontal=2)
    assert _slot_sources(layout_for([subject], ReferenceSettings())) == [[0, 1, 2, None]]
    assert _slot_sources(layout_for([subject], ReferenceSettings(slot_anchor="frontal"))) == [[2, None, 0, 1]]
