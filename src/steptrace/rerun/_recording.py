"""The recording a run keeps for ``steptrace.rerun`` (``record_for_rerun``): one JSONL file per run.

``<log dir>/rerun/<run_id>.jsonl``, mode 0600, one line per finished call, appended with a single
``os.write`` as the run goes (a crash keeps what was recorded). Every line has the key
``"recording"`` (its kind: ``run``, ``arguments``, ``llm``, ``tool``, ``end``) and the ``run_id``;
the format is described in docs/step-records.md.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from steptrace._content import ContentPolicy

FORMAT_VERSION = 1
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
        self.path = directory / f"{run_id}.jsonl"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
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
