"""The recording a run keeps for ``steptrace.rerun`` (``record_for_rerun``): one JSONL file per run.

``<log dir>/rerun/<run_id>.jsonl`` (``recording_name``: a run id that is not a plain file name
becomes a safe name plus its hash, so no run id writes outside the folder), mode 0600, one line
per finished call, appended with a single ``os.write`` as the run goes (a crash keeps what was
recorded). Every line has the key ``"recording"`` (its kind: ``run``, ``arguments``, ``llm``,
``tool``, ``end``) and the ``run_id``; the format is described in docs/step-records.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from steptrace._content import ContentPolicy

FORMAT_VERSION = 2  # 2: exact values ({"value": ...}), unmatched_args, not replayable marks
RECORDING_KEY = "recording"
RECORDING_DIR = "rerun"

# ASCII: a lone surrogate in a recorded string is written as its escape and read back as it was.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)


class Recorder:
    """The recording file of one (root) run; nested runs write into their root's recording."""

    __slots__ = ("_fd", "_lock", "_next_llm", "path", "policy", "run_id", "tool_counts")

    def __init__(self, directory: Path, run_id: str, policy: ContentPolicy) -> None:
        self.run_id = run_id
        self.policy = policy
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / f"{recording_name(run_id)}.jsonl"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        self._fd: int | None = os.open(self.path, flags, 0o600)
        self._lock = threading.Lock()
        self._next_llm = 0
        self.tool_counts: dict[str, int] = {}

    def next_llm_number(self) -> int:
        """The model calls of the run are numbered 1, 2, ... in the order they start."""
        with self._lock:
            self._next_llm += 1
            return self._next_llm

    def count_tool(self, name: str) -> None:
        with self._lock:
            self.tool_counts[name] = self.tool_counts.get(name, 0) + 1

    def write(self, line: dict[str, Any]) -> None:
        data = (_ENCODER.encode(line) + "\n").encode("ascii")
        with self._lock:
            fd = self._fd
            if fd is not None:
                os.write(fd, data)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def recording_dir(log_dir: Path) -> Path:
    return log_dir / RECORDING_DIR


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def is_plain_name(run_id: str) -> bool:
    """A run id that is its own file name: ASCII letters, digits, ``_.-``, not starting with a dot."""
    return _PLAIN_NAME.fullmatch(run_id) is not None


def recording_name(run_id: str) -> str:
    """The file name (without ``.jsonl``) of ``run_id``'s recording: the id itself when plain,
    else its safe characters (up to 40) and a hash of the whole id (``..-x-1f3a...``)."""
    if is_plain_name(run_id):
        return run_id
    digest = hashlib.blake2b(run_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    readable = _UNSAFE_CHARS.sub("_", run_id)[:40].strip("._-")
    return f"{readable}-{digest}" if readable else f"run-{digest}"


# --- reading ----------------------------------------------------------------------------------
_CALL_INTS = ("seq", "agent_step")
_OUTCOMES = ("result", "response")


def read_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The recording lines of a file (or an exported run), and whether it holds step records too.

    Torn lines (a crash) and foreign lines are skipped; a line whose fields have the wrong types
    (a corrupt or edited file) is kept as a call that cannot be served (``sanitize_line``).
    Raises ``OSError`` when the file cannot be read.
    """
    lines: list[dict[str, Any]] = []
    exported = False
    with path.open("rb") as handle:
        for raw in handle:
            try:
                line = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if not isinstance(line, dict):
                continue
            if RECORDING_KEY in line:
                clean = sanitize_line(line)
                if clean is not None:
                    lines.append(clean)
            elif "type" in line and "run_id" in line:
                exported = True
    return lines, exported


def _is_int(value: Any) -> bool:
    return type(value) is int


def sanitize_line(line: dict[str, Any]) -> dict[str, Any] | None:
    """``line`` with the types the rerun relies on, or None for a line that names nothing.

    A call line with a field of the wrong type keeps its place (number, name) and is marked
    ``unreplayable``: the rerun reaching it raises ``RerunDivergence`` naming it.
    """
    kind = line.get(RECORDING_KEY)
    run_id = line.get("run_id")
    if not isinstance(kind, str) or not (run_id is None or isinstance(run_id, str)):
        return None
    if kind == "run":
        return line if isinstance(run_id, str) and run_id else None
    if kind == "end":
        if not _valid_outcome(line.get("outcome")):
            line = {key: value for key, value in line.items() if key != "outcome"}
        return line
    if kind not in ("llm", "tool"):
        return line
    bad: list[str] = []
    out = dict(line)
    for key in _CALL_INTS + (("number",) if kind == "llm" else ()):
        value = out.get(key)
        if value is not None and not (_is_int(value) and value >= 0):
            bad.append(key)
            out[key] = None
    if kind == "llm" and out.get("number") is None:
        out["number"] = 0
    if kind == "tool":
        if not isinstance(out.get("name"), str):
            bad.append("name")
            out["name"] = str(out.get("name"))
        if not (out.get("args_hash") is None or isinstance(out.get("args_hash"), str)):
            bad.append("args_hash")
            out["args_hash"] = None
    for key in _OUTCOMES:
        if key in out and not isinstance(out[key], dict):
            bad.append(key)
            del out[key]
    chunks = out.get("chunks")
    if chunks is not None and not (isinstance(chunks, list) and all(isinstance(c, dict) for c in chunks)):
        bad.append("chunks")
        del out["chunks"]
    error = out.get("error")
    fields = ("type", "name", "message")
    if error is not None and not (
        isinstance(error, dict) and all(isinstance(error.get(k, ""), str) for k in fields)
    ):
        bad.append("error")
        del out["error"]
    unmatched = out.get("unmatched_args")
    if unmatched is not None and not (
        isinstance(unmatched, list) and all(isinstance(name, str) for name in unmatched)
    ):
        bad.append("unmatched_args")
        del out["unmatched_args"]
    why = out.get("unreplayable")
    if why is not None and not isinstance(why, str):
        out["unreplayable"] = str(why)
    if bad:
        out["unreplayable"] = f"the recording is corrupt here ({', '.join(bad)})"
    return out


def _valid_outcome(outcome: Any) -> bool:
    if not isinstance(outcome, dict):
        return False

    def counts(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and _is_int(v) for k, v in value.items())

    return (
        isinstance(outcome.get("stop_reason"), (str, type(None)))
        and _is_int(outcome.get("steps", 0))
        and _is_int(outcome.get("errors", 0))
        and counts(outcome.get("tool_calls") or {})
        and counts(outcome.get("tokens") or {})
    )
