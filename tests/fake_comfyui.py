"""A tiny stand-in for a ComfyUI server (http.server on 127.0.0.1, one thread per request), for client tests.

It speaks the routes :class:`mvs2v_core.comfyui_http.ComfyUIClient` uses, with ComfyUI's JSON shapes:
``/system_stats``, ``/object_info[/{class}]``, ``/prompt`` (validating class types like ComfyUI),
``/history/{id}``, ``/queue``, ``/interrupt``, ``/upload/image``, ``/view``. No websocket (``/ws``
answers 404), so the client polls. A job's fate is set by ``FakeComfyUI.job``: a callable
``(prompt) -> Job``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Job:
    """What a queued prompt does: finish after ``seconds`` with ``outputs``, or fail with ``error`` (data of
    an execution_error message); ``seconds=None`` never finishes (it stays running)."""

    seconds: float | None = 0.0
    outputs: dict = field(default_factory=dict)
    error: dict | None = None


OBJECT_INFO = {
    "EmptyImage": {"input": {"required": {"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}},
    "UNETLoader": {"input": {"required": {"unet_name": [["wan.safetensors"]],
                                          "weight_dtype": [["default", "fp8_e4m3fn"]]}}},
    "VAELoader": {"input": {"required": {"vae_name": ["COMBO", {"options": ["wan_vae.safetensors"]}]}}},
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
}


class FakeComfyUI:
    """Start with ``with FakeComfyUI() as fake:``; ``fake.url`` is its address."""

    def __init__(self, port: int = 0) -> None:
        self.object_info = json.loads(json.dumps(OBJECT_INFO))
        self.job: Callable[[dict], Job] = lambda prompt: Job()
        self.fail_next: dict[str, int] = {}  # route prefix -> how many 503 answers to give first
        self.requests: list[tuple[str, str]] = []
        self.jobs: dict[str, tuple[float, Job]] = {}
        self.interrupted: list[Any] = []
        self.deleted: list[str] = []
        self.uploads: dict[str, bytes] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, filename) -> bytes
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.fake = self  # type: ignore[attr-defined] - what the handler serves
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeComfyUI":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- behaviour -------------------------------------------------------------------------------

    def queue_prompt(self, body: dict) -> tuple[int, dict]:
        prompt = body.get("prompt", {})
        for node_id, node in prompt.items():
            if node.get("class_type") not in self.object_info:
                return 400, {"error": {"type": "invalid_prompt", "message": f"Cannot execute because node "
                                       f"{node.get('class_type')} does not exist.", "details": f"Node ID '#{node_id}'",
                                       "extra_info": {}}, "node_errors": {}}
        node_errors = {}
        for node_id, node in prompt.items():
            if node["class_type"] == "UNETLoader" and node["inputs"].get("unet_name") != "wan.safetensors":
                node_errors[node_id] = {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                                    "details": f"unet_name: '{node['inputs'].get('unet_name')}' not in "
                                                               "['wan.safetensors']", "extra_info": {}}],
                                        "dependent_outputs": [], "class_type": "UNETLoader"}
        if node_errors:
            return 400, {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed "
                                   "validation", "details": "", "extra_info": {}}, "node_errors": node_errors}
        with self.lock:
            prompt_id = f"job-{len(self.jobs)}"
            self.jobs[prompt_id] = (time.monotonic(), self.job(prompt))
        return 200, {"prompt_id": prompt_id, "number": len(self.jobs), "node_errors": {}}

    def history(self, prompt_id: str) -> dict:
        if prompt_id not in self.jobs:
            return {}
        started, job = self.jobs[prompt_id]
        if job.seconds is None or time.monotonic() - started < job.seconds or prompt_id in self.deleted:
            return {}
        if job.error is not None:
            messages = [["execution_start", {"prompt_id": prompt_id}],
                        ["execution_error", {"prompt_id": prompt_id, **job.error}]]
            status = {"status_str": "error", "completed": False, "messages": messages}
        else:
            status = {"status_str": "success", "completed": True, "messages": []}
        return {prompt_id: {"prompt": [], "outputs": job.outputs, "status": status}}

    def queue(self) -> dict:
        running = [[i, pid, {}, {}, []] for i, (pid, (_, job)) in enumerate(self.jobs.items())
                   if job.seconds is None and pid not in self.interrupted and pid not in self.deleted]
        return {"queue_running": running[:1], "queue_pending": running[1:]}


class _Handler(BaseHTTPRequestHandler):
    @property
    def fake(self) -> FakeComfyUI:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _failing(self, route: str) -> bool:
        with self.fake.lock:
            self.fake.requests.append((self.command, route))
            for prefix, n in self.fake.fail_next.items():
                if route.startswith(prefix) and n > 0:
                    self.fake.fail_next[prefix] = n - 1
                    self._send(503, {"error": "busy"})
                    return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urllib.parse.urlparse(self.path)
        route = url.path
        if self._failing(route):
            return
        if route == "/system_stats":
            self._send(200, {"system": {"comfyui_version": "fake"}, "devices": []})
        elif route == "/object_info":
            self._send(200, self.fake.object_info)
        elif route.startswith("/object_info/"):
            name = urllib.parse.unquote(route.split("/", 2)[2])
            self._send(200, {name: self.fake.object_info[name]} if name in self.fake.object_info else {})
        elif route.startswith("/history/"):
            self._send(200, self.fake.history(route.split("/", 2)[2]))
        elif route == "/queue":
            self._send(200, self.fake.queue())
        elif route == "/view":
            q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            key = (q.get("type", "output"), q.get("subfolder", ""), q.get("filename", ""))
            if key in self.fake.files:
                self._send(200, self.fake.files[key], "application/octet-stream")
            else:
                self._send(404, b"", "text/plain")
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        route = urllib.parse.urlparse(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._failing(route):
            return
        if route == "/prompt":
            self._send(*self.fake.queue_prompt(json.loads(body)))
        elif route == "/interrupt":
            self.fake.interrupted.append(json.loads(body or b"{}").get("prompt_id"))
            self._send(200, b"", "text/plain")
        elif route == "/queue":
            self.fake.deleted += json.loads(body).get("delete", [])
            self._send(200, b"", "text/plain")
        elif route == "/upload/image":
            self._upload(body)
        else:
            self._send(404, {"error": "not found"})

    def _upload(self, body: bytes) -> None:
        boundary = re.search(r"boundary=(\S+)", self.headers["Content-Type"]).group(1).encode()
        fields, name, data = {}, None, b""
        for part in body.split(b"--" + boundary):
            head, _, content = part.partition(b"\r\n\r\n")
            m = re.search(rb'name="([^"]+)"(?:; filename="([^"]*)")?', head)
            if not m:
                continue
            content = content[:-2]  # the part's closing \r\n
            if m.group(2) is not None:
                name, data = m.group(2).decode(), content
            else:
                fields[m.group(1).decode()] = content.decode()
        sub = fields.get("subfolder", "")
        key = f"{sub}/{name}" if sub else name
        self.fake.uploads[key] = data
        options = self.fake.object_info["LoadImage"]["input"]["required"]["image"][0]
        if not sub and key not in options:  # as ComfyUI: LoadImage lists the input folder's top level only
            options.append(key)
        self._send(200, {"name": name, "subfolder": sub, "type": fields.get("type", "input")})

