"""The ComfyUI HTTP client against a fake server (tests/fake_comfyui.py): every error path, retries, placeholders."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mvs2v_core.comfyui_http import ComfyUIClient, ComfyUIError, OutputFile, fill_placeholders, find_placeholders
from mvs2v_core.errors import MVS2VError
from tests.fake_comfyui import FakeComfyUI, Job

WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
OUTPUTS = {"2": {"images": [{"filename": "x_00001_.png", "subfolder": "", "type": "output"}], "text": ["not a file"]}}


@pytest.fixture
def fake():
    with FakeComfyUI() as server:
        yield server


def client(fake: FakeComfyUI, **kw) -> ComfyUIClient:
    return ComfyUIClient(fake.url, **{"retries": 0, "backoff": 0.0, **kw})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_one_line_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ComfyUIError, match=rf"ComfyUI at {url} is not reachable: .*start it or fix the URL"):
        ComfyUIClient(url, retries=1, backoff=0.0).system_stats()
    assert issubclass(ComfyUIError, MVS2VError)


def test_bad_url_is_refused():
    with pytest.raises(ComfyUIError, match="must look like http://"):
        ComfyUIClient("127.0.0.1:8188")


def test_5xx_is_retried_then_succeeds(fake):
    fake.fail_next["/system_stats"] = 2
    assert client(fake, retries=2, backoff=0.01).system_stats()["system"]["comfyui_version"] == "fake"
    assert [r for r in fake.requests if r[1] == "/system_stats"] == [("GET", "/system_stats")] * 3
    fake.fail_next["/system_stats"] = 3
    with pytest.raises(ComfyUIError, match="HTTP 503"):
        client(fake, retries=2, backoff=0.0).system_stats()


@pytest.mark.parametrize("call", ["system_stats", "run"])
def test_connection_refused_is_retried_until_the_server_comes_up(call):
    port = _free_port()
    holder = {}

    def start_later():
        time.sleep(0.3)
        holder["fake"] = FakeComfyUI(port).__enter__()

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        c = ComfyUIClient(f"http://127.0.0.1:{port}", retries=6, backoff=0.1)
        if call == "run":  # POST /prompt is repeated too: a refused connection never reached the server
            assert c.run(WORKFLOW).prompt_id == "job-0"
        else:
            assert c.system_stats()["system"]["comfyui_version"] == "fake"
    finally:
        thread.join()
        holder["fake"].__exit__(None, None, None)


def test_post_prompt_is_not_repeated_on_5xx(fake):
    fake.fail_next["/prompt"] = 1
    with pytest.raises(ComfyUIError, match="refused the workflow \\(HTTP 503\\)"):
        client(fake, retries=3, backoff=0.0).run(WORKFLOW)
    assert [r for r in fake.requests if r[1] == "/prompt"] == [("POST", "/prompt")]


def test_run_waits_and_lists_output_files_then_downloads_them(fake, tmp_path):
    fake.job = lambda prompt: Job(seconds=0.3, outputs=OUTPUTS)
    fake.files[("output", "", "x_00001_.png")] = b"PNG bytes"
    result = client(fake).run(WORKFLOW)
    assert result.prompt_id == "job-0" and result.seconds >= 0.3
    assert result.outputs == [OutputFile("2", "x_00001_.png", "", "output", "images")]
    path = client(fake).download(result.outputs[0], tmp_path)
    assert path == tmp_path / "x_00001_.png" and path.read_bytes() == b"PNG bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["x_00001_.png"]  # no temporary file left
    with pytest.raises(ComfyUIError, match="has no output output//gone.png \\(HTTP 404\\)"):
        client(fake).download(OutputFile("2", "gone.png", "", "output", "images"), tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_refused_prompt_summarises_node_errors_in_one_line(fake):
    bad = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "nope.safetensors", "weight_dtype": "default"}}}
    with pytest.raises(ComfyUIError) as info:
        client(fake).run(bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert "HTTP 400" in msg and "Prompt outputs failed validation" in msg
    assert "node 1 UNETLoader: Value not in list: unet_name: 'nope.safetensors' not in" in msg


def test_unknown_node_type_is_named_by_check_and_by_the_server(fake):
    wf = {**WORKFLOW, "3": {"class_type": "MysteryNode", "inputs": {}}, "4": {"class_type": "Other", "inputs": {}}}
    with pytest.raises(ComfyUIError, match="has no node type MysteryNode, Other: install the node pack"):
        client(fake).check_workflow(wf)
    with pytest.raises(ComfyUIError, match="Cannot execute because node MysteryNode does not exist"):
        client(fake).run(wf)


def test_missing_model_file_names_file_node_and_input(fake):
    wf = {"7": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors", "weight_dtype": "fp16"}},
          "8": {"class_type": "VAELoader", "inputs": {"vae_name": "other_vae.safetensors"}}}
    with pytest.raises(ComfyUIError) as info:
        client(fake).check_workflow(wf)
    msg = str(info.value)
    assert "\n" not in msg
    assert "model file 'other_vae.safetensors' (node 8 VAELoader, input vae_name) is not on the server" in msg
    assert "value 'fp16' (node 7 UNETLoader, input weight_dtype) is not one of the server's choices: 'default'" in msg
    client(fake).check_workflow({"7": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors",
                                                                             "weight_dtype": "default"}}})


def test_ui_format_workflow_is_refused():
    with pytest.raises(ComfyUIError, match="UI format; export it in API format"):
        ComfyUIClient("http://127.0.0.1:1").check_workflow({"nodes": [], "links": []})


def test_upload_round_trip_makes_the_image_valid_for_load_image(fake, tmp_path):
    c = client(fake)
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "front.png"}}}
    with pytest.raises(ComfyUIError, match="image 'front.png' .* not in ComfyUI's input folder: upload it"):
        c.check_workflow(wf)
    img = tmp_path / "front.png"
    img.write_bytes(b"\x89PNG fake \r\n bytes")
    assert c.upload_image(img) == "front.png"
    c.check_workflow(wf)  # the cached object_info is looked up again for LoadImage
    assert c.upload_image(img, subfolder="refs") == "refs/front.png"
    assert fake.uploads["refs/front.png"] == img.read_bytes()
    # LoadImage lists only the input folder's top level: a subfolder image is left to ComfyUI's own validation.
    c.check_workflow({"1": {"class_type": "LoadImage", "inputs": {"image": "refs/front.png"}}})
    with pytest.raises(ComfyUIError, match="does not exist"):
        c.upload_image(tmp_path / "missing.png")


def test_job_failing_mid_run_names_node_class_and_exception(fake):
    fake.job = lambda prompt: Job(seconds=0.2, error={
        "node_id": "2", "node_type": "SaveImage", "exception_type": "builtins.RuntimeError",
        "exception_message": "shapes do not match\n", "traceback": ["..."]})
    with pytest.raises(ComfyUIError, match=r"job job-0 failed at node 2 \(SaveImage\): RuntimeError: shapes do not "
                                           r"match$"):
        client(fake).run(WORKFLOW)


def test_timeout_interrupts_our_running_job(fake):
    fake.job = lambda prompt: Job(seconds=None)
    with pytest.raises(ComfyUIError, match="did not finish in 0.5 s; it was interrupted"):
        client(fake).run(WORKFLOW, timeout=0.5)
    assert fake.interrupted == ["job-0"] and fake.deleted == []


def test_timeout_behind_another_clients_job_removes_ours_and_leaves_theirs(fake):
    fake.jobs["theirs"] = (time.monotonic(), Job(seconds=None))  # running, queued by someone else
    fake.job = lambda prompt: Job(seconds=None)
    with pytest.raises(ComfyUIError, match="removed from the queue before it started"):
        client(fake).run(WORKFLOW, timeout=0.3)
    assert fake.deleted == ["job-1"] and fake.interrupted == []


def test_timeout_after_the_job_left_the_queue_sends_nothing(fake):
    fake.job = lambda prompt: Job(seconds=5.0)  # not in the fake's queue: as if another server ran it
    with pytest.raises(ComfyUIError, match="no longer queued or running"):
        client(fake).run(WORKFLOW, timeout=0.3)
    assert fake.interrupted == [] and fake.deleted == []


def test_fill_placeholders_whole_values_keep_their_type_and_inline_ones_become_text():
    wf = {"1": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "model": ["2", 0]}},
          "2": {"class_type": "Save", "inputs": {"prefix": "bench/{{case}}_{{seed}}", "size": "{{ size }}"}}}
    out = fill_placeholders(wf, {"seed": 7, "case": "c1", "size": [64, 32], "unused": 1})
    assert out["1"]["inputs"] == {"seed": 7, "model": ["2", 0]}
    assert out["2"]["inputs"] == {"prefix": "bench/c1_7", "size": [64, 32]}
    assert wf["1"]["inputs"]["seed"] == "{{seed}}"  # a copy: the template is untouched
    assert find_placeholders(wf) == ["seed", "case", "size"]


def test_fill_placeholders_lists_every_missing_name_and_never_evaluates():
    wf = {"1": {"class_type": "X", "inputs": {"a": "{{prompt}}", "b": "{{width}}x{{height}}",
                                              "c": "{{__import__('os')}}"}}}
    with pytest.raises(ComfyUIError, match=r"placeholders \{\{prompt\}\}, \{\{width\}\}, \{\{height\}\} have no value"):
        fill_placeholders(wf, {"seed": 1})
    out = fill_placeholders(wf, {"prompt": "p", "width": 8, "height": 4})
    assert out["1"]["inputs"]["c"] == "{{__import__('os')}}"  # not a placeholder name: left as text


def test_without_websocket_client_the_job_is_polled(fake, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "websocket", None)  # `import websocket` now raises ImportError
    fake.job = lambda prompt: Job(seconds=0.2, outputs=OUTPUTS)
    c = client(fake)
    assert c._open_socket() is None
    assert c.run(WORKFLOW).outputs[0].filename == "x_00001_.png"
    assert sum(1 for r in fake.requests if r[1] == "/history/job-0") >= 1
