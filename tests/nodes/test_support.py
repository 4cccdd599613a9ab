"""The node pack's pure logic (nodes/support.py), tested without ComfyUI.

Slot assembly, letterboxing, preview grid, cache keys, path safety (every refusal), reference
folders; the pack's import rules.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.pack_import import pack_module

cs = pack_module("nodes.support")
MVS2VError = pack_module("mvs2v_core.errors").MVS2VError
REPO = Path(__file__).resolve().parents[2]


def _views(n: int, h: int = 40, w: int = 60, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, h, w, 3), generator=g) / 255.0).float()


# ---- subjects and layouts ------------------------------------------------------------------------


def test_view_labels_parse_and_count():
    assert cs.parse_view_labels("", 3) == [None, None, None]
    assert cs.parse_view_labels("Front, 45 ,", 3) == ["front", "45", None]
    with pytest.raises(MVS2VError, match="2 label"):
        cs.parse_view_labels("front,left", 3)
    with pytest.raises(MVS2VError, match="not understood"):
        cs.parse_view_labels("front,sideways", 2)


def test_labels_choose_slots_and_frontal():
    s = cs.make_subject("cat", _views(3), "back, front, 90")
    rs = cs.build_reference_set([s], 4, "gray")
    assert rs.layout.filled == [True, True, True, False]
    slots = cs.slot_sources(rs)
    assert slots == [(0, 1), (0, 2), (0, 0), None]  # front <- view 1, left (90) <- view 2, back <- view 0
    assert rs.layout.subjects[0].frontal == 0  # the view labelled front sits in slot 0


def test_frontal_slot_anchor_puts_the_frontal_view_in_slot_0():
    s = cs.make_subject("cat", _views(3), "back, front, 90", frontal=0)  # the video starts from the back
    rs = cs.build_reference_set([s], 4, "gray", "frontal")
    assert rs.slot_anchor == "frontal"
    assert cs.slot_sources(rs) == [(0, 0), None, (0, 1), (0, 2)]  # back, (back + 90 empty), front, left
    # The preview names what each slot stands for: slot 0 holds the back view here, not the front.
    assert [d["view"] for d in cs.describe_layout(rs.layout, rs.slot_anchor)] == [
        "frontal", "frontal+90°", "frontal+180°", "frontal+270°"]
    assert cs.build_reference_set([s], 4, "gray").slot_anchor == "canonical"
    with pytest.raises(MVS2VError, match="slot anchor 'first' is unknown"):
        cs.build_reference_set([s], 4, "gray", "first")


def test_duplicate_subject_names_are_made_unique_and_too_many_views_refused():
    a, b = cs.make_subject("cat", _views(1)), cs.make_subject("cat", _views(1, seed=1))
    rs = cs.build_reference_set([a, b], 2, "drop")
    assert [s.name for s in rs.layout.subjects] == ["cat", "cat (2)"]
    with pytest.raises(MVS2VError, match="only 2 slots"):
        cs.build_reference_set([cs.make_subject("x", _views(3))], 2, "gray")
    with pytest.raises(MVS2VError, match="no subjects"):
        cs.build_reference_set([], 4, "gray")
    with pytest.raises(MVS2VError, match="frontal view 5"):
        cs.make_subject("x", _views(2), frontal=5)


def test_mask_count_and_size_are_checked():
    with pytest.raises(MVS2VError, match="2 masks for 3 views"):
        cs.make_subject("x", _views(3), masks=torch.ones(2, 40, 60))
    with pytest.raises(MVS2VError, match="mask size"):
        cs.make_subject("x", _views(1), masks=torch.ones(1, 10, 10))
    one = cs.make_subject("x", _views(3), masks=torch.ones(40, 60))
    assert one.masks.shape == (3, 40, 60)


# ---- slot assembly and letterboxing --------------------------------------------------------------


def test_slot_pixels_letterbox_on_white_and_gray_empty_slots():
    img = torch.zeros(1, 20, 40, 3)  # black, 2:1, into a 64 x 64 canvas -> 64 x 32 band
    rs = cs.build_reference_set([cs.make_subject("x", img, "front")], 2, "gray")
    px, filled = cs.slot_pixels(rs, 64, 64)
    assert px.shape == (2, 64, 64, 3) and filled == [True, False]
    assert torch.all(px[0, :16] == 1.0) and torch.all(px[0, -16:] == 1.0)  # white bars
    assert torch.all(px[0, 16:48] == 0.0)  # the image, scaled to the width
    assert torch.allclose(px[1], torch.full((64, 64, 3), 128 / 255))  # mid-gray empty slot


def test_mask_turns_background_white():
    img = torch.zeros(1, 32, 32, 3)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1.0
    rs = cs.build_reference_set([cs.make_subject("x", img, masks=mask)], 1, "gray")
    px, _ = cs.slot_pixels(rs, 32, 32)
    assert torch.all(px[0, 0, 0] == 1.0) and torch.all(px[0, 16, 16] == 0.0)


def test_same_size_uint8_views_pass_unchanged():
    """Views already at the video size come out bit-identical (as Phantom's own resize)."""
    img = _views(1, 48, 64)
    rs = cs.build_reference_set([cs.make_subject("x", img)], 1, "gray")
    px, _ = cs.slot_pixels(rs, 64, 48)
    assert torch.equal(px[0], img[0])


def test_rgba_image_batch_is_composited_on_white_like_the_folder_loader(tmp_path):
    """A 4-channel IMAGE keeps its alpha: transparent pixels turn white (not black), half alpha blends."""
    rgba = torch.zeros(1, 32, 32, 4)
    rgba[..., 0] = 1.0                # red ...
    rgba[:, 8:24, 8:24, 3] = 1.0      # ... opaque only in the middle
    rgba[:, 0, 0, 3] = 0.5            # one half-transparent pixel
    subject = cs.make_subject("x", rgba)
    assert subject.images.shape == (1, 32, 32, 3)
    px, _ = cs.slot_pixels(cs.build_reference_set([subject], 1, "gray"), 32, 32)
    assert torch.all(px[0, 2, 2] == 1.0) and torch.equal(px[0, 16, 16], torch.tensor([1.0, 0.0, 0.0]))
    assert abs(float(px[0, 0, 0, 1]) - 0.5) <= 1 / 255
    # the same picture as a PNG in a reference folder gives the same slot
    arr = (rgba[0] * 255).round().to(torch.uint8).numpy()
    Image.fromarray(arr, "RGBA").save(tmp_path / "front.png")
    pixels, alpha = cs.load_image_tensor(tmp_path / "front.png")
    folder = cs.SubjectViews("x", (pixels,), (None,), None, (alpha,))
    from_file, _ = cs.slot_pixels(cs.build_reference_set([folder], 1, "gray"), 32, 32)
    assert torch.allclose(from_file, px, atol=1 / 255)
    assert cs.view_to_pil(rgba[0]).getpixel((2, 2)) == (255, 255, 255)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_are_an_error_naming_subject_and_view(bad):
    imgs = _views(3)
    imgs[2, 5, 5, 1] = bad
    with pytest.raises(MVS2VError, match=r"subject 'cat'.*view 2 .*NaN or infinite") as exc:
        cs.make_subject("cat", imgs)
    assert "\n" not in str(exc.value)
    rgba = torch.ones(2, 8, 8, 4)
    rgba[1, 0, 0, 3] = bad  # in the alpha channel too
    with pytest.raises(MVS2VError, match="view 1 "):
        cs.make_subject("cat", rgba)
    mask = torch.ones(3, 40, 60)
    mask[1, 0, 0] = bad
    with pytest.raises(MVS2VError, match=r"subject 'cat': mask 1 .*NaN"):
        cs.make_subject("cat", _views(3), masks=mask)
    with pytest.raises(MVS2VError, match="NaN or infinite"):
        cs.view_to_pil(imgs[2])


def test_reference_folder_reads_wide_images_and_refuses_nan(tmp_path):
    """16-bit PNGs are scaled (not white), float TIFFs are read, a NaN TIFF is a one-line error."""
    import numpy as np

    folder = tmp_path / "refs" / "cat"
    folder.mkdir(parents=True)
    g16 = np.array([[0, 257 * 100], [65535, 257 * 200]], dtype=np.uint16)
    Image.frombytes("I;16", (2, 2), g16.tobytes()).save(folder / "front.png")
    Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)).save(folder / "back.tif")
    listing = cs.list_reference_folder(tmp_path, "refs")
    assert [p.name for p, _ in listing[0][1]] == ["back.tif", "front.png"]
    subject = cs.subject_from_folder(*listing[0])
    assert torch.allclose(subject.images[1][..., 0], torch.tensor([[0, 100], [255, 200]]) / 255.0, atol=1e-6)
    assert torch.allclose(subject.images[0][..., 2], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert subject.masks is None
    Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)).save(folder / "left.tif")
    with pytest.raises(MVS2VError, match=r"'left.tif' is a float image with 1 NaN") as exc:
        cs.load_image_tensor(folder / "left.tif")
    assert str(tmp_path) not in str(exc.value)  # the server's folders stay private


def test_frontal_pixels_follow_the_frontal_view():
    imgs = torch.stack([torch.zeros(32, 32, 3), torch.ones(32, 32, 3)])
    rs = cs.build_reference_set([cs.make_subject("x", imgs, "left, front")], 4, "gray")
    assert torch.all(cs.frontal_pixels(rs, 32, 32)[0] == 1.0)


def test_preview_grid_shows_every_slot():
    rs = cs.build_reference_set([cs.make_subject("a", _views(2), "front,back"), cs.make_subject("b", _views(1))], 4, "proxy")
    grid = cs.preview_grid(rs, cell=64)
    assert grid.shape == (1, 2 * (64 + 18), 4 * 64, 3)
    # an empty slot is hatched gray with a red cross: red pixels appear in the empty cell (row 0, slot 1)
    cell = grid[0, 2:62, 66:126]
    assert ((cell[..., 0] > 0.7) & (cell[..., 1] < 0.3)).any()
    info = cs.describe_layout(rs.layout)
    assert [d["view"] for d in info[:4]] == ["front", "left", "back", "right"]
    assert [d["filled"] for d in info] == [True, False, True, False, True, False, False, False]


def test_preview_hatching_stays_inside_empty_cells():
    """A filled cell's pixels are exactly its letterboxed view, even between two empty cells."""
    cell = 64
    red = torch.zeros(1, 40, 60, 3)
    red[..., 0] = 1.0
    rs = cs.build_reference_set([cs.make_subject("a", torch.cat([red, red]), "front,back")], 4, "proxy")
    grid = cs.preview_grid(rs, cell=cell)[0]
    expected = cs._pil_to_tensor(cs.letterbox(cs.view_to_pil(red[0]), cell - 4, cell - 4))
    for col in (0, 2):  # slot 1 (left) and slot 3 (right) are empty, hatched and labelled
        x0 = col * cell
        assert torch.equal(grid[2:cell - 2, x0 + 2:x0 + cell - 2], expected), col
        border = torch.tensor([40, 40, 40]) / 255.0
        assert torch.allclose(grid[2:cell - 2, x0 + cell - 2:x0 + cell], border.expand(cell - 4, 2, 3)), col


# ---- caching keys --------------------------------------------------------------------------------


def test_cache_keys_follow_content_and_size():
    a = _views(1)[0]
    b = a.clone()
    b[0, 0, 0] += 1 / 255
    assert cs.slot_cache_key(a, 64, 64) == cs.slot_cache_key(a.clone(), 64, 64)
    assert cs.slot_cache_key(a, 64, 64) != cs.slot_cache_key(b, 64, 64)
    assert cs.slot_cache_key(a, 64, 64) != cs.slot_cache_key(a, 64, 48)
    assert cs.tensor_digest(a) != cs.tensor_digest(a.double())


def test_latent_cache_is_lru():
    cache = cs.LatentCache(max_entries=2)
    cache.put("a", torch.zeros(1))
    cache.put("b", torch.ones(1))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", torch.ones(2))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    assert cache.hits == 2 and cache.misses == 1


# ---- path safety: every refusal ------------------------------------------------------------------


@pytest.fixture()
def input_root(tmp_path: Path) -> Path:
    root = tmp_path / "input"
    (root / "refs" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "refs" / "cat" / "front.png")
    (tmp_path / "secret").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "secret" / "front.png")
    return root


@pytest.mark.parametrize("name, rule", [
    ("", "empty"),
    ("   ", "empty"),
    ("../secret", r"'\.\.'"),
    ("refs/../../secret", r"'\.\.'"),
    ("/etc", "absolute"),
    ("~/x", "absolute"),
    ("C:/Windows", "absolute"),
    ("refs\\cat", "backslash"),
    ("refs\x00", "NUL"),
    ("missing", "does not exist"),
])
@pytest.mark.parametrize("follow_links", [False, True])
def test_resolve_under_refuses(input_root, name, rule, follow_links):
    """Typed names stay confined under both link rules (input/ and the model folders)."""
    with pytest.raises(MVS2VError, match=rule):
        cs.resolve_under(input_root, name, "reference folder", follow_links=follow_links)


def test_resolve_under_refuses_symlinks_out(input_root):
    (input_root / "escape").symlink_to(input_root.parent / "secret", target_is_directory=True)
    with pytest.raises(MVS2VError, match="outside"):
        cs.resolve_under(input_root, "escape", "reference folder", follow_links=False)
    (input_root / "refs" / "cat" / "link.png").symlink_to(input_root.parent / "secret" / "front.png")
    with pytest.raises(MVS2VError, match="outside"):
        cs.list_reference_folder(input_root, "refs")


def test_resolve_under_accepts_inside_and_inner_symlinks(input_root):
    got = cs.resolve_under(input_root, "refs/cat", "folder", follow_links=False)
    assert got == (input_root / "refs" / "cat").resolve()
    (input_root / "alias").symlink_to(input_root / "refs", target_is_directory=True)
    assert cs.resolve_under(input_root, "alias/cat/front.png", "image", follow_links=False).is_file()


def test_model_folder_links_to_another_disk_are_followed(tmp_path):
    """models/mvs2v/x.safetensors -> /other/disk/x.safetensors is the server owner's link: allowed."""
    models, other = tmp_path / "models" / "mvs2v", tmp_path / "other_disk"
    models.mkdir(parents=True)
    (other / "sub").mkdir(parents=True)
    (other / "a.safetensors").write_bytes(b"x")
    (other / "sub" / "b.safetensors").write_bytes(b"y")
    (models / "a.safetensors").symlink_to(other / "a.safetensors")
    (models / "linked").symlink_to(other / "sub", target_is_directory=True)
    got = cs.resolve_under(models, "a.safetensors", "adapter file", follow_links=True)
    assert got == (other / "a.safetensors").resolve()
    assert cs.resolve_under(models, "linked/b.safetensors", "adapter file", follow_links=True).read_bytes() == b"y"
    # the same links are refused under the input/ rule, and typed names stay confined under both
    with pytest.raises(MVS2VError, match="outside"):
        cs.resolve_under(models, "a.safetensors", "adapter file", follow_links=False)
    for name, rule in (("../../other_disk/a.safetensors", r"'\.\.'"), (str(other / "a.safetensors"), "absolute"),
                       ("linked\\b.safetensors", "backslash"), ("a.safetensors\x00", "NUL")):
        with pytest.raises(MVS2VError, match=rule):
            cs.resolve_under(models, name, "adapter file", follow_links=True)
    (models / "dangling.safetensors").symlink_to(other / "gone.safetensors")
    with pytest.raises(MVS2VError, match="does not exist"):
        cs.resolve_under(models, "dangling.safetensors", "adapter file", follow_links=True)


def _follow_links_args(path: Path, function: str) -> list:
    """The ``follow_links=`` values of every ``resolve_under`` call inside ``function`` of ``path``."""
    tree = ast.parse(path.read_text())
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    calls = [n for n in ast.walk(func) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", getattr(n.func, "id", "")) == "resolve_under"]
    return [next(ast.literal_eval(k.value) for k in c.keywords if k.arg == "follow_links") for c in calls]


def test_adapter_names_use_the_model_folder_rule_and_inputs_the_input_rule():
    """Each caller states its rule: adapters (model folders) follow links, reference folders do not.

    (model_nodes.py imports ComfyUI, so its source is read, not run.)
    """
    assert _follow_links_args(REPO / "nodes" / "model_nodes.py", "_adapter_path") == [True]
    assert _follow_links_args(REPO / "nodes" / "support.py", "list_reference_folder") == [False] * 3


def test_reference_folder_reads_subjects_and_labels(input_root):
    img = Image.new("RGBA", (10, 6), (0, 0, 255, 0))
    img.save(input_root / "refs" / "cat" / "yaw_90.png")
    (input_root / "refs" / "hat").mkdir()
    Image.new("RGB", (5, 5)).save(input_root / "refs" / "hat" / "photo.jpg")
    (input_root / "refs" / "notes.txt").write_text("ignored")
    listing = cs.list_reference_folder(input_root, "refs")
    assert [(n, [(p.name, l) for p, l in v]) for n, v in listing] == [
        ("cat", [("front.png", "front"), ("yaw_90.png", "90")]), ("hat", [("photo.jpg", None)])]
    subject = cs.subject_from_folder(*listing[0])
    assert subject.images[1].shape == (6, 10, 3) and subject.masks[1] is not None and subject.masks[0] is None
    rs = cs.build_reference_set([subject], 4, "gray")
    assert rs.layout.filled == [True, True, False, False]
    with pytest.raises(MVS2VError, match="no subject subfolders"):
        cs.list_reference_folder(input_root, "refs/cat")


def test_unreadable_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(MVS2VError, match="cannot read"):
        cs.load_image_tensor(bad)


def test_no_workflow_value_is_evaluated_as_code():
    """Nothing in the pack calls eval/exec/pickle or torch.load (weights are safetensors only)."""
    files = list((REPO / "nodes").glob("*.py")) + [REPO / "__init__.py"]
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else "")
                assert name not in {"eval", "exec", "__import__"}, f"{path.name}: {name}()"
                assert not (isinstance(f, ast.Name) and name == "compile"), f"{path.name}: compile()"
                if isinstance(f, ast.Attribute) and name == "load":
                    owner = f.value.id if isinstance(f.value, ast.Name) else ""
                    assert owner not in {"torch", "pickle"}, f"{path.name}: {owner}.load()"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert not any(m and m.split(".")[0] in {"pickle", "marshal", "dill"} for m in mods), path.name


def test_pickle_adapters_are_refused(tmp_path):
    from mvs2v_core.adapter import load_adapter
    from mvs2v_core.errors import CheckpointError

    p = tmp_path / "adapter.pt"
    p.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="pickle"):
        load_adapter(p)


def test_three_pass_weights_sum_to_one():
    from mvs2v_core.sampling.guidance import phantom_weights

    w = phantom_weights(5.0, 7.5)
    assert w == (-4.0, -2.5, 7.5) and sum(w) == 1.0
    assert phantom_weights(1.0, 1.0) == (0.0, 0.0, 1.0)


def test_pack_imports_core_relatively_and_never_edits_sys_path():
    for path in list((REPO / "nodes").glob("*.py")) + [REPO / "__init__.py"]:
        text = path.read_text()
        assert "sys.path" not in text, path.name
        assert "from mvs2v_core" not in text and "import mvs2v_core" not in text, path.name
    support = (REPO / "nodes" / "support.py").read_text()
    assert "import comfy" not in support and "folder_paths" not in support.split('"""', 2)[2]


def test_pack_root_exports_only_web_directory_without_comfyui():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mvs2v_pack_root", REPO / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.WEB_DIRECTORY == "./web" and not hasattr(module, "NODE_CLASS_MAPPINGS")
    assert os.path.isfile(REPO / "web" / "mvs2v.js")
