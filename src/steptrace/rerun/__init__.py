"""Re-run a recorded run: the agent's own code, with recorded model and tool outputs fed back in.

>>> with steptrace.rerun("45d5", log="steptrace-logs") as rerun:  # doctest: +SKIP
...     run_agent("What was our Q3 revenue, in euros?")
>>> print(rerun.report.verdict)  # doctest: +SKIP

Recording (``configure(record_for_rerun=True)``) lives in ``_recording``/``_hook``, serving in
``_serving``, the report in ``_report``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from steptrace.rerun._hook import enter_session, leave_session, set_recording
from steptrace.rerun._recording import RECORDING_DIR, is_plain_name, recording_name
from steptrace.rerun._report import Outcome, RerunReport, build_report
from steptrace.rerun._serving import MODES, RecordedRun, RecordingNotFound, RerunDivergence, RerunSession

__all__ = [
    "MODES",
    "Outcome",
    "RecordingNotFound",
    "Rerun",
    "RerunDivergence",
    "RerunReport",
    "find_recording",
    "rerun",
    "rerun_reports",
    "set_recording",
]

DEFAULT_LOG = "steptrace-logs"
ENV_RUN = "STEPTRACE_RERUN"
ENV_LLM = "STEPTRACE_RERUN_LLM"
ENV_TOOLS = "STEPTRACE_RERUN_TOOLS"
ENV_REPORT = "STEPTRACE_RERUN_REPORT"
logger = logging.getLogger("steptrace.rerun")


def log_directory(log: str | os.PathLike[str] | None) -> Path:
    """The step log's directory: ``log``, else ``$STEPTRACE_JSONL_PATH``, else ./steptrace-logs."""
    text = os.fspath(log) if log is not None else os.environ.get("STEPTRACE_JSONL_PATH") or DEFAULT_LOG
    path = Path(text).expanduser()
    return path.parent if path.suffix in (".jsonl", ".gz") or path.is_file() else path


def find_recording(run: str | os.PathLike[str], log: str | os.PathLike[str] | None = None) -> Path:
    """The recording file of ``run`` (a run id or a unique prefix, or an exported file's path)."""
    path = Path(os.fspath(run)).expanduser()
    if _is_file(path):
        return path
    run_id = os.fspath(run)
    directory = log_directory(log) / RECORDING_DIR
    exact = directory / f"{recording_name(run_id)}.jsonl"
    if run_id and _is_file(exact):  # also a run id that is no file name (see recording_name)
        return exact
    matches = sorted(directory.glob(f"{run_id}*.jsonl")) if is_plain_name(run_id) else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RecordingNotFound(f"run id prefix {run_id!r} is ambiguous: {len(matches)} recordings match")
    known = _run_in_step_log(run_id, log_directory(log))
    if known is not None:
        raise RecordingNotFound(f"run {known[:8]}… was recorded without record_for_rerun; nothing to re-run")
    raise RecordingNotFound(f"no recording of run {run_id!r} in {directory}")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name no file can have (too long, a NUL in it)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


VERDICTS_DIR = "verdicts"  # <log dir>/rerun/verdicts/<run id>.jsonl: one report per rerun


def verdicts_path(recording: Path, run_id: str) -> Path | None:
    """Where the reports of reruns of ``recording`` are kept: ``<dir>/rerun/verdicts/<run id>.jsonl``
    beside the log's recordings, or beside an exported file (``tests/incident.jsonl`` ->
    ``tests/rerun/verdicts/``), where ``debug RUN --log tests/incident.jsonl`` finds them."""
    if not _safe_name(run_id):
        return None
    base = recording.parent if recording.parent.name == RECORDING_DIR else recording.parent / RECORDING_DIR
    return base / VERDICTS_DIR / f"{recording_name(run_id)}.jsonl"


def _keep_report(recording: Path, report: RerunReport) -> Path | None:
    """Append the report where ``steptrace debug`` of the original run finds it; returns where."""
    target = verdicts_path(recording, report.original_run_id)
    if target is None:
        return None
    line = json.dumps({"ts": time.time(), **report.to_dict()}, default=str) + "\n"
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:  # the rerun itself succeeded; debug will just not show it
        logger.warning("steptrace: could not keep the rerun report in %s (%s)", target, exc)
        return None
    return target


def _safe_name(run_id: str) -> bool:
    return isinstance(run_id, str) and bool(run_id)  # any id: files are named by recording_name


def rerun_reports(run_id: str, log: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The reports of every rerun of ``run_id`` (``RerunReport.to_dict()`` plus ``ts``), oldest
    first: what ``steptrace debug`` shows under the run. Unreadable lines are skipped."""
    if not _safe_name(run_id):
        return []
    path = log_directory(log) / RECORDING_DIR / VERDICTS_DIR / f"{recording_name(run_id)}.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    reports = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("verdict"), str):
            reports.append(data)
    return reports


def _run_in_step_log(run_id: str, directory: Path) -> str | None:
    from steptrace.analysis import LogError, load

    if not directory.exists():
        return None
    try:
        found = load(directory).get(run_id)
    except LogError:
        return None
    return found.run_id if found is not None else None


class Rerun:
    """An active rerun (``steptrace.rerun(...)``); ``report`` is filled in when the block ends."""

    def __init__(self, session: RerunSession) -> None:
        self.session = session
        self.report: RerunReport | None = None
        self._token: Any = None
        self._entered = False
        self._process = False
        self.kept_in: Path | None = None
        """Where the report was kept for ``steptrace debug`` (None: it could not be)."""

    @property
    def original_run_id(self) -> str:
        return self.session.recorded.run_id

    @property
    def run_id(self) -> str | None:
        """The rerun's own run id, once its agent_run has started."""
        run = self.session.run
        return run.run_id if run is not None else None

    def finish(self) -> RerunReport:
        """Stop serving and build the report (``__exit__`` does this); kept for ``debug``."""
        if self.report is not None:
            return self.report
        if self._entered:
            self._entered = False
            leave_session(self.session, self._token)
        self.report = build_report(self.session)
        self.kept_in = _keep_report(self.session.recorded.path, self.report)
        return self.report

    def __enter__(self) -> Rerun:
        self._token = enter_session(self.session, process=self._process)
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish()


def rerun(
    run: str | os.PathLike[str],
    *,
    log: str | os.PathLike[str] | None = None,
    llm: str = "recorded",
    tools: str = "recorded",
) -> Rerun:
    """Re-run recorded run ``run`` (an id or prefix in ``log``, or an exported file) in a ``with``.

    Modes, for ``llm`` and ``tools``: ``"recorded"`` serves every call from the recording and
    raises ``RerunDivergence`` into the agent for a call it does not have; ``"until-divergence"``
    serves until the first difference, then calls for real; ``"live"`` calls for real (and still
    compares, for the report). The first ``agent_run`` started inside the block is the rerun; its
    run span carries ``steptrace.rerun_of``. Raises ``RecordingNotFound`` (a ``LookupError``).
    """
    path = find_recording(run, log)
    return Rerun(RerunSession(RecordedRun.read(path), llm, tools))


# --- the CLI's way in: a rerun switched on through the environment ------------------------------
_env_rerun: Rerun | None = None


def start_from_environment() -> None:
    """``steptrace rerun ... -- COMMAND``: configure() in COMMAND starts the rerun once."""
    global _env_rerun
    target = os.environ.get(ENV_RUN)
    if not target or _env_rerun is not None:
        return
    recorded = RecordedRun.read(Path(target))
    session = RerunSession(
        recorded, os.environ.get(ENV_LLM, "recorded"), os.environ.get(ENV_TOOLS, "recorded")
    )
    active = Rerun(session)
    active._process = True  # the command is the rerun: every context of the process serves it
    _env_rerun = active.__enter__()
    atexit.register(_write_environment_report)


def _write_environment_report() -> None:
    active = _env_rerun
    destination = os.environ.get(ENV_REPORT)
    if active is None:
        return
    report = active.finish()
    if destination:
        data = {**report.to_dict(), "kept_in": str(active.kept_in) if active.kept_in else None}
        Path(destination).write_text(json.dumps(data), encoding="utf-8")


def report_from_dict(data: dict[str, Any]) -> RerunReport:
    """A report written by ``to_dict()`` (the CLI reads the command's report back)."""

    def outcome(value: Any) -> Outcome | None:
        if not isinstance(value, dict):
            return None
        return Outcome(
            str(value["stop_reason"]),
            int(value["steps"]),
            dict(value["tool_calls"]),
            int(value["errors"]),
            dict(value["tokens"]),
        )

    original = outcome(data["original"])
    assert original is not None
    return RerunReport(
        data["original_run_id"],
        data["run_id"],
        bool(data["reproduced"]),
        data["diverged_at"],
        data["divergence"],
        original,
        outcome(data["rerun"]),
        data["verdict"],
        data.get("llm", "recorded"),
        data.get("tools", "recorded"),
        dict(data.get("ran") or {}),
        [str(text) for text in data.get("warnings") or []],
        [str(text) for text in data.get("unmatched_args") or []],
    )
