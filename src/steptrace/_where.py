"""Where an exception was raised: the innermost frames of the user's own code (not the standard
library, an installed package or steptrace), as file, line and function, for the step record."""

from __future__ import annotations

import functools
import os
import sysconfig
from typing import Any

import steptrace

MAX_WHERE_FRAMES = 3
_SCANNED_FRAMES = 64  # the innermost frames of each exception looked at (deep recursion is cut)
_MAX_CHAIN = 8  # exceptions followed through __cause__ / __context__


def _library_dirs() -> tuple[str, ...]:
    paths = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.add(os.path.dirname(os.path.abspath(steptrace.__file__)))
    return tuple(os.path.join(os.path.abspath(p), "") for p in paths if p)


_LIBRARY_DIRS = _library_dirs()


@functools.lru_cache(maxsize=1024)
def _in_user_code(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return False
    return not os.path.abspath(filename).startswith(_LIBRARY_DIRS)


def _shown_path(filename: str) -> str:
    """Relative to the working directory when inside it, else the file's last two path parts:
    no home directory or user name in the record."""
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was removed
        cwd = "/nonexistent"
    return _shown_in(filename, cwd)


@functools.lru_cache(maxsize=1024)
def _shown_in(filename: str, cwd: str) -> str:
    path = os.path.abspath(filename) if os.path.isabs(filename) else os.path.join(cwd, filename)
    cwd = os.path.join(cwd, "")
    if path.startswith(cwd):
        return path[len(cwd) :]
    parts = path.replace(os.sep, "/").rsplit("/", 2)
    return "/".join(parts[-2:]) if len(parts) > 1 else path


def raised_where(exc: BaseException, limit: int = MAX_WHERE_FRAMES) -> list[dict[str, Any]]:
    """The innermost ``limit`` frames of the user's code in ``exc``'s traceback, innermost first:
    ``[{"file": "agent/tools.py", "line": 41, "function": "refund"}]``. When the exception has
    none (a library re-raised it), its cause's, or the exception it was raised while handling."""
    current: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if current is None:
            break
        # The frames' code and line, not traceback.extract_tb: no source line is read.
        frames = []
        tb = current.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame.f_code, tb.tb_lineno))
            tb = tb.tb_next
        user = [(code, line) for code, line in frames[-_SCANNED_FRAMES:] if _in_user_code(code.co_filename)]
        if user:
            return [
                {"file": _shown_path(code.co_filename), "line": line, "function": code.co_name}
                for code, line in reversed(user[-limit:])
            ]
        current = current.__cause__ or current.__context__
    return []


def where_text(where: Any) -> str | None:
    """``tools.py:41 in refund`` (the innermost frame), from a record's ``error_where``."""
    if not isinstance(where, list) or not where or not isinstance(where[0], dict):
        return None
    frame = where[0]
    return f"{frame.get('file')}:{frame.get('line')} in {frame.get('function')}"
