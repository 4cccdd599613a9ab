"""A client of a running ComfyUI's public HTTP + websocket API (no ComfyUI import).

``ComfyUIClient(url)`` checks a workflow against the server's ``/object_info`` (unknown node types,
model files or images the server does not have), uploads reference images, queues an API-format
workflow (``POST /prompt``), waits for it and downloads its outputs (``GET /view``).

Waiting uses the websocket (``/ws``, package ``websocket-client``, imported lazily) for progress
and errors as they happen, with a look at ``/history/{id}`` every few seconds as a safety net; when
the package is missing or the socket cannot be opened or breaks, it polls ``/history/{id}``.

On a timeout (or Ctrl-C) the job is cancelled only when it is ours and not finished: a pending job
is deleted from the queue; a running one is interrupted with ``POST /interrupt`` carrying its
``prompt_id`` (servers that honour it interrupt only that job). Another client's job is never touched.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..utils import atomic_write
from ._http import ComfyUIError, HTTPStatusError, Transport, multipart_body

__all__ = ["ComfyUIClient", "ComfyUIError", "JobResult", "OutputFile"]

MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".pt2")
POLL_SECONDS = 0.5
SOCKET_CHECK_SECONDS = 5.0  # with a websocket: look at /history this often anyway (a missed message)
MAX_DETAIL = 300  # characters of one server message kept in an error line


@dataclass
class OutputFile:
    """One file a job wrote: where ``GET /view`` finds it, and under which output key (``kind``)."""

    node_id: str
    filename: str
    subfolder: str
    type: str
    kind: str  # the history output key: images, gifs, videos, audio, ...


@dataclass
class JobResult:
    """A finished job: its id, output files, wall seconds from queueing to the end, its history entry."""

    prompt_id: str
    outputs: list[OutputFile]
    seconds: float
    history: dict = field(repr=False)


def _short(text: Any, limit: int = MAX_DETAIL) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _combo_options(spec: Any) -> list | None:
    """The choices of a combo input spec (old form ``[[a, b], {...}]``, new ``["COMBO", {"options": [...]}]``)."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        return spec[1]["options"]
    return None


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _is_image_input(class_type: str, name: str, spec: Any) -> bool:
    meta = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(meta.get("image_upload")) or (name == "image" and "LoadImage" in class_type)


def _unlisted_image(class_type: str, name: str, value: Any, spec: Any) -> bool:
    """An image in a subfolder of the input folder (``refs/a.png``) or annotated (``a.png [output]``): LoadImage
    accepts it but lists only the folder's top level, so the list cannot say it is missing (ComfyUI's own
    validation still does, at POST /prompt)."""
    return _is_image_input(class_type, name, spec) and isinstance(value, str) and ("/" in value or value.endswith("]"))


def _value_problem(node_id: str, class_type: str, name: str, value: Any, spec: Any) -> str:
    """One clause saying why ``value`` is not among the server's choices for this input."""
    options = _combo_options(spec) or []
    where = f"node {node_id} {class_type}, input {name}"
    if _is_image_input(class_type, name, spec):
        return f"image {value!r} ({where}) is not in ComfyUI's input folder: upload it first or fix the name"
    if str(value).lower().endswith(MODEL_SUFFIXES) or name.endswith("_name"):
        return (f"model file {value!r} ({where}) is not on the server: put it in the ComfyUI models folder this "
                f"loader reads (or fetch it with mvs2v models), or fix the name ({len(options)} files there)")
    shown = ", ".join(map(repr, options[:8])) + (", ..." if len(options) > 8 else "")
    return f"value {value!r} ({where}) is not one of the server's choices: {shown}"


def _summarise_refusal(body: Any) -> str:
    """ComfyUI's answer to a refused prompt (``error`` + ``node_errors``) as one line."""
    if not isinstance(body, dict):
        return _short(body)
    err = body.get("error") or {}
    parts = [_short(err.get("message", "") if isinstance(err, dict) else err)]
    if isinstance(err, dict) and err.get("details"):
        parts[0] += f" ({_short(err['details'], 150)})"
    for node_id, info in (body.get("node_errors") or {}).items():
        for e in (info or {}).get("errors", []):
            detail = f": {_short(e.get('details'), 150)}" if e.get("details") else ""
            parts.append(f"node {node_id} {info.get('class_type', '?')}: {e.get('message', '?')}{detail}")
    return "; ".join(p for p in parts if p)


def _job_error(prompt_id: str, data: dict) -> ComfyUIError:
    """The error of an ``execution_error`` message (websocket data or history status message)."""
    message = _short(data.get("exception_message", "")) or "no message"
    kind = data.get("exception_type", "")
    kind = f"{kind.rsplit('.', 1)[-1]}: " if kind else ""
    return ComfyUIError(f"ComfyUI job {prompt_id} failed at node {data.get('node_id', '?')} "
                        f"({data.get('node_type', '?')}): {kind}{message}")


def outputs_of(entry: dict) -> list[OutputFile]:
    """Every file in a history entry's ``outputs`` (items with a ``filename``), in node then key order."""
    files = []
    for node_id, node_out in (entry.get("outputs") or {}).items():
        for kind, items in (node_out or {}).items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    files.append(OutputFile(str(node_id), item["filename"], item.get("subfolder", ""),
                                            item.get("type", "output"), kind))
    return files


class ComfyUIClient:
    """Talks to one ComfyUI server.

    Args:
        url: its address, e.g. ``http://127.0.0.1:8188``.
        timeout: default seconds a job may take in :meth:`run` (one HTTP request: at most 60 s).
        retries, backoff: repeats of a request that failed to connect (idempotent ones also on 5xx)
            and the first pause between them (doubled each time).
        client_id: the websocket client id (default: a new uuid4).
    """

    def __init__(self, url: str, *, timeout: float = 600.0, retries: int = 3, backoff: float = 1.0,
                 client_id: str | None = None) -> None:
        self.timeout = float(timeout)
        self._http = Transport(url, min(self.timeout, 60.0), retries, backoff)
        self.url = self._http.url
        self.client_id = client_id or str(uuid.uuid4())
        self._object_info: dict | None = None

    # ---- server state ----------------------------------------------------------------------------------------------

    def system_stats(self) -> dict:
        """``GET /system_stats`` (versions, devices); the first call to make: it says whether the server is up."""
        try:
            stats = self._http.get_json("/system_stats")
        except HTTPStatusError as exc:
            raise ComfyUIError(f"{self.url} answered /system_stats with HTTP {exc.status}: is it a ComfyUI server? "
                               "fix the URL") from None
        if not isinstance(stats, dict):
            raise ComfyUIError(f"{self.url} answered /system_stats with no JSON object: is it a ComfyUI server?")
        return stats

    def object_info(self, class_type: str | None = None, refresh: bool = False) -> dict:
        """``/object_info`` (cached after the first call), or one class's entry fetched afresh."""
        if class_type is not None:
            info = self._http.get_json("/object_info/" + urllib.parse.quote(class_type, safe=""))
            entry = info.get(class_type) if isinstance(info, dict) else None
            if self._object_info is not None and entry is not None:
                self._object_info[class_type] = entry
            return entry or {}
        if self._object_info is None or refresh:
            info = self._http.get_json("/object_info")
            if not isinstance(info, dict):
                raise ComfyUIError(f"{self.url} answered /object_info with no JSON object: is it a ComfyUI server?")
            self._object_info = info
        return self._object_info

    # ---- checks ----------------------------------------------------------------------------------------------------

    def check_workflow(self, workflow: dict) -> None:
        """Raise one line for what the server cannot run: node types it lacks, files or choices it lacks.

        Reads ``/object_info`` once; a combo value not in the cached list is looked up again for
        its class alone (an image uploaded or a model added since) before it counts as missing.
        """
        _check_api_format(workflow)
        info = self.object_info()
        unknown = sorted({n["class_type"] for n in workflow.values() if n["class_type"] not in info})
        if unknown:
            raise ComfyUIError(f"the ComfyUI at {self.url} has no node type {', '.join(unknown)}: install the node "
                               "pack that provides it (and restart ComfyUI), or fix the workflow")
        problems = []
        for node_id, node in workflow.items():
            for name, value, spec in self._bad_choices(node["class_type"], node.get("inputs") or {}, info):
                problems.append(_value_problem(str(node_id), node["class_type"], name, value, spec))
        if problems:
            raise ComfyUIError("; ".join(problems))

    def _bad_choices(self, class_type: str, inputs: dict, info: dict) -> list[tuple[str, Any, Any]]:
        """``(input, value, spec)`` of the combo inputs whose value the server does not offer."""
        bad, refreshed = [], False
        for name, value in inputs.items():
            if _is_link(value):
                continue
            spec = _input_spec(info.get(class_type, {}), name)
            options = _combo_options(spec)
            if options is None or value in options or _unlisted_image(class_type, name, value, spec):
                continue
            if not refreshed:  # the list may have grown since it was cached
                info[class_type] = self.object_info(class_type) or info[class_type]
                refreshed = True
                spec = _input_spec(info[class_type], name)
                if value in (_combo_options(spec) or []):
                    continue
            bad.append((name, value, spec))
        return bad

    # ---- files -----------------------------------------------------------------------------------------------------

    def upload_image(self, path: Path, *, subfolder: str = "", overwrite: bool = True) -> str:
        """``POST /upload/image`` into ComfyUI's input folder; the name a LoadImage node takes."""
        path = Path(path)
        if not path.is_file():
            raise ComfyUIError(f"image {path} to upload does not exist")
        body, ctype = multipart_body({"overwrite": "true" if overwrite else "false", "subfolder": subfolder,
                                      "type": "input"}, "image", path.name, path.read_bytes())
        try:
            answer = self._http.request("POST", "/upload/image", body=body, content_type=ctype, idempotent=overwrite)
        except HTTPStatusError as exc:
            raise ComfyUIError(f"ComfyUI refused the upload of {path} (HTTP {exc.status}): {_short(exc.body)}") from None
        if not isinstance(answer, dict) or "name" not in answer:
            raise ComfyUIError(f"ComfyUI answered the upload of {path} without a file name: {_short(answer)}")
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def download(self, f: OutputFile, dest: Path) -> Path:
        """``GET /view`` of an output into ``dest`` (a file, or a folder to put ``f.filename`` in), atomically."""
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / Path(f.filename).name
        query = urllib.parse.urlencode({"filename": f.filename, "subfolder": f.subfolder, "type": f.type})
        try:
            with atomic_write(dest) as tmp, open(tmp, "wb") as out:
                self._http.request("GET", f"/view?{query}", stream_to=out)
        except HTTPStatusError as exc:
            raise ComfyUIError(f"ComfyUI has no output {f.type}/{f.subfolder}/{f.filename} (HTTP {exc.status}): it "
                               "was deleted, or the job ran on another server") from None
        return dest

    # ---- jobs ------------------------------------------------------------------------------------------------------

    def queue(self, workflow: dict) -> str:
        """``POST /prompt``; the prompt id. A refusal (HTTP 400) is one line with ComfyUI's node errors."""
        _check_api_format(workflow)
        try:
            answer = self._http.post_json("/prompt", {"prompt": workflow, "client_id": self.client_id},
                                          idempotent=False)
        except HTTPStatusError as exc:
            raise ComfyUIError(f"ComfyUI refused the workflow (HTTP {exc.status}): {_summarise_refusal(exc.body)}") from None
        if not isinstance(answer, dict) or "prompt_id" not in answer:
            raise ComfyUIError(f"ComfyUI answered POST /prompt without a prompt_id: {_short(answer)}")
        if answer.get("node_errors"):  # queued without the outputs it found invalid: not what was asked
            self._cancel_if_ours(str(answer["prompt_id"]))
            raise ComfyUIError(f"ComfyUI refused part of the workflow: {_summarise_refusal(answer)}")
        return str(answer["prompt_id"])

    def run(self, workflow: dict, *, timeout: float | None = None,
            progress: Callable[[dict], None] | None = None) -> JobResult:
        """Queue ``workflow``, wait for it (``timeout`` s, default the client's), return its outputs.

        ``progress`` gets every websocket message of this job as ``{"type": ..., **data}``
        (``executing``, ``progress``, ``executed``, ...). A node error, an interruption or the timeout
        raise :class:`ComfyUIError`; the job is cancelled on timeout only if it is ours and unfinished.
        """
        limit = self.timeout if timeout is None else float(timeout)
        start = time.monotonic()
        socket = self._open_socket()  # before queueing: no message of the job is missed
        try:
            prompt_id = self.queue(workflow)
            deadline = start + limit
            try:
                entry = self._wait(prompt_id, socket, deadline, progress, limit)
            except KeyboardInterrupt:
                self._cancel_if_ours(prompt_id)
                raise
        finally:
            if socket is not None:
                socket.close()
        return JobResult(prompt_id, outputs_of(entry), time.monotonic() - start, entry)

    def _open_socket(self) -> Any:
        """A websocket on ``/ws`` for this client id, or None (no websocket-client, or it cannot connect)."""
        try:
            import websocket  # websocket-client, optional
        except ImportError:
            return None
        ws_url = "ws" + self.url[len("http"):] + "/ws?clientId=" + urllib.parse.quote(self.client_id)
        try:
            return websocket.create_connection(ws_url, timeout=10)
        except Exception:  # noqa: BLE001 - any failure means: poll instead
            return None

    def _wait(self, prompt_id: str, socket: Any, deadline: float, progress: Callable[[dict], None] | None,
              limit: float) -> dict:
        """The job's history entry once it is done; raises on its failure or at ``deadline``."""
        next_check = time.monotonic() + SOCKET_CHECK_SECONDS
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise self._timed_out(prompt_id, limit)
            if socket is not None:
                done = self._socket_step(socket, prompt_id, min(deadline, next_check) - now, progress)
                if done is False and time.monotonic() < next_check:
                    continue
                if done is not False:  # the job ended (history may lag a moment) or the socket broke: poll
                    socket = None
                next_check = time.monotonic() + SOCKET_CHECK_SECONDS
            entry = self._finished_entry(prompt_id)
            if entry is not None:
                return entry
            if socket is None:
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def _socket_step(self, socket: Any, prompt_id: str, wait: float, progress: Callable[[dict], None] | None) -> bool | None:
        """Read one websocket message: True when the job ended, False otherwise, None when the socket broke."""
        import websocket

        try:
            socket.settimeout(max(0.05, wait))
            raw = socket.recv()
        except websocket.WebSocketTimeoutException:
            return False
        except Exception:  # noqa: BLE001 - closed or broken: fall back to polling
            return None
        if not isinstance(raw, str):
            return False  # binary: a preview image
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError:
            return False
        data = msg.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
            return False
        kind = msg.get("type")
        if progress is not None:
            progress({"type": kind, **data})
        if kind == "execution_error":
            raise _job_error(prompt_id, data)
        if kind == "execution_interrupted":
            raise ComfyUIError(f"ComfyUI job {prompt_id} was interrupted at node {data.get('node_id', '?')} "
                               "(cancelled in the UI or by POST /interrupt); run it again")
        return kind == "execution_success" or (kind == "executing" and data.get("node") is None)

    def _finished_entry(self, prompt_id: str) -> dict | None:
        """The job's history entry when it has finished successfully, None while it has not; raises on failure."""
        history = self._http.get_json("/history/" + urllib.parse.quote(prompt_id, safe=""))
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        if entry is None:
            return None
        status = entry.get("status") or {}
        messages = status.get("messages") or []
        if status.get("status_str") == "error":
            for kind, data in messages:
                if kind == "execution_error":
                    raise _job_error(prompt_id, data)
            raise ComfyUIError(f"ComfyUI job {prompt_id} ended with an error"
                               f"{' (interrupted)' if any(k == 'execution_interrupted' for k, _ in messages) else ''}: "
                               f"{_short(messages)}")
        return entry if status.get("completed", True) else None

    def _timed_out(self, prompt_id: str, limit: float) -> ComfyUIError:
        action = self._cancel_if_ours(prompt_id)
        return ComfyUIError(f"ComfyUI job {prompt_id} did not finish in {limit:g} s; {action}; give it a longer "
                            "timeout, or check the server's log if it is stuck")

    def _cancel_if_ours(self, prompt_id: str) -> str:
        """Delete our pending job from the queue or interrupt it while it runs; what was done, in words."""
        try:
            queue = self._http.get_json("/queue")
            running = [item[1] for item in queue.get("queue_running", [])]
            pending = [item[1] for item in queue.get("queue_pending", [])]
            if prompt_id in pending:
                self._http.post_json("/queue", {"delete": [prompt_id]}, idempotent=True)
                return "it was removed from the queue before it started"
            if prompt_id in running:
                self._http.post_json("/interrupt", {"prompt_id": prompt_id}, idempotent=False)
                return "it was interrupted"
        except ComfyUIError as exc:
            return f"it could not be cancelled ({exc})"
        return "it is no longer queued or running"


def _input_spec(class_info: dict, name: str) -> Any:
    inputs = class_info.get("input") or {}
    for group in ("required", "optional"):
        if name in (inputs.get(group) or {}):
            return inputs[group][name]
    return None


def _check_api_format(workflow: Any) -> None:
    """An API-format workflow: ``{node_id: {"class_type": str, "inputs": {...}}}``; the UI format is refused."""
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise ComfyUIError("this workflow is in ComfyUI's UI format; export it in API format (Workflow > Export (API))")
    if not isinstance(workflow, dict) or not workflow:
        raise ComfyUIError("a ComfyUI workflow must be a non-empty JSON object of nodes (API format)")
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ComfyUIError(f"workflow node {node_id!r} has no class_type: is this an API-format workflow "
                               "(Workflow > Export (API))?")
