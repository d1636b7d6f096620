"""Size-based rotation for the append-only JSONL files (the step log, the OTLP spill file).

``RotatingFile.append(data)`` writes one whole chunk with one ``O_APPEND`` write. Every append,
whatever its own limit (rotation off too), holds an ``flock`` on ``<file>.lock`` while it checks
that the file it holds is still the one at the path (another process may have rotated it) and
how big it is; past the limit it renames the file to ``<stem>.<UTC time>.jsonl`` and starts a
new one, so no record is lost or torn at the switch, whatever the number of processes appending
and their limits. A background thread then compresses the renamed file to
``<stem>.<UTC time>.jsonl.gz``, once nothing has written to it for 1.5 s (an older writer that
ignores the lock still appends there for up to a second), and keeps the newest ``backups``.
Every name ends in ``.jsonl`` or ``.jsonl.gz``: reading the directory reads the whole set.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import re
import shutil
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from steptrace._errors import ConfigError

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 5
# Level 1: ~4x faster than gzip's default for ~25% bigger files; rotated logs are read rarely.
COMPRESS_LEVEL = 1
_REOPEN_CHECK_INTERVAL_S = 1.0
# A renamed file is compressed and removed only once nothing has written to it for this long: a
# writer that does not take the lock (an older steptrace with rotation off) re-checks the path
# once a second (_REOPEN_CHECK_INTERVAL_S) and may append to the renamed file until then.
_QUIET_BEFORE_COMPRESS_S = 1.5
_SHUTDOWN_WAIT_S = 5.0
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _CLOEXEC
_UNITS = {"": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2}
_UNITS.update({"g": 1024**3, "gb": 1000**3, "gib": 1024**3})


def parse_size(name: str, value: str | int) -> int:
    """Bytes from ``value`` (``52428800``, ``50MiB``, ``1GB``); ConfigError naming ``name`` if bad."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name}={value!r} is not a size in bytes; use e.g. 104857600 or 100MiB")
    if isinstance(value, int):
        number = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ConfigError(f"{name}={value!r} is not a size in bytes; use e.g. 104857600 or 100MiB")
        number = int(match.group(1)) * _UNITS[unit]
    if number < 0:
        raise ConfigError(f"{name}={value!r} must be at least 0 (0 turns rotation off)")
    return number


def parse_count(name: str, value: str | int) -> int:
    """A count of files >= 0 from ``value``; ConfigError naming ``name`` if bad."""
    try:
        number = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value))
    except ValueError:
        number = -1
    if number < 0 or isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a number of files (0 or more)")
    return number


def _split(path: Path) -> tuple[str, str]:
    """("steps", ".jsonl") for steps.jsonl: rotated names go between the two."""
    suffix = path.suffix or ".jsonl"
    return (path.name[: -len(path.suffix)] if path.suffix else path.name), suffix


def rotated_files(path: str | os.PathLike[str]) -> list[Path]:
    """The set a rotated log ``path`` stands for, oldest first: compressed backups, renamed files
    not compressed yet, then ``path`` itself (when it exists)."""
    live = Path(path)
    stem, suffix = _split(live)
    pattern = re.compile(re.escape(stem) + r"\.\d{8}T\d{6}\.\d{6}Z(-\d+)?" + re.escape(suffix) + r"(\.gz)?")
    found: dict[str, Path] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(live.parent):
            if pattern.fullmatch(entry.name):
                plain = entry.name.removesuffix(".gz")
                if entry.name.endswith(".gz") or plain not in found:  # one name: the .gz wins
                    found[plain] = Path(entry.path)
    files = [found[key] for key in sorted(found)]
    if live.exists():
        files.append(live)
    return files


def _not_quiet_for(path: Path) -> float:
    """Seconds until ``path`` has gone ``_QUIET_BEFORE_COMPRESS_S`` unchanged (renamed or written:
    ctime and mtime); 0.0 if it has, is gone, or carries a time far in the future (a clock set
    back: waiting for it would keep the file uncompressed for good)."""
    try:
        stat = os.stat(path)
    except OSError:
        return 0.0
    left = _QUIET_BEFORE_COMPRESS_S - (time.time() - max(stat.st_mtime, stat.st_ctime))
    return min(left, _QUIET_BEFORE_COMPRESS_S) if 0 < left < _QUIET_BEFORE_COMPRESS_S + 60 else 0.0


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # only on a nearly full disk; keeps the line whole
        written += os.write(fd, data[written:])


class RotatingFile:
    """An append-only 0600 file, rotated past ``max_bytes`` (0: never) keeping ``backups`` gzips.

    Thread-safe and fork-safe; several processes may append to one path. ``append`` raises
    OSError when the disk fails (the caller decides how loud to be); compression errors are kept
    in ``compress_error`` and never reach the writer.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0  # rotations this process made
        self.compress_error: OSError | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock_fd: int | None = None
        self._seen_rotation = -1
        self._size = 0  # of the file at the last fstat; plus the bytes written since:
        self._unmeasured = 0
        # Others' writes are seen at the next fstat: the file passes the limit by at most this much
        # per process appending.
        self._measure_every = min(max_bytes // 8, 1024 * 1024)
        self._next_check = 0.0
        self._work = threading.Condition(threading.Lock())
        self._requests = 0
        self._done = 0
        self._compressor: threading.Thread | None = None
        self._closed = False
        self._open()  # raise now, at configuration, rather than on the hot path
        if self.max_bytes and len(rotated_files(self.path)) > 1:
            self._request_compression()  # a process that stopped before compressing its last file
        if hasattr(os, "register_at_fork"):
            this = weakref.ref(self)

            def reinit_in_child() -> None:
                log = this()
                if log is not None:
                    log._after_fork()

            os.register_at_fork(after_in_child=reinit_in_child)

    def _after_fork(self) -> None:
        # The flock belongs to the open file description the parent shares: take our own.
        self._lock = threading.Lock()
        self._work = threading.Condition(threading.Lock())
        self._compressor = None
        self._requests = self._done = 0
        self._close_lock()

    # --- writing ----------------------------------------------------------------------------------
    #
    # Every append holds the flock on ``<file>.lock``, with rotation off too: a process with
    # another limit may rotate the path, and a record written to the renamed file after its
    # compression would be lost. That file's size is also a
    # rotation counter: a rotating process grows it by one byte (sparse, so even a full disk takes
    # it; a memory map could SIGBUS there). A writer compares it with the size it last saw, one
    # fstat (a stat of the path costs three times as much), and reopens the path when it changed.

    def _open(self) -> None:
        self._close_fd()  # first: a failed open must not leave us writing to a file moved away
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, _FLAGS, 0o600)
        stat = os.fstat(fd)
        self._fd = fd
        self._inode = (stat.st_dev, stat.st_ino)
        self._size = stat.st_size
        self._unmeasured = 0

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open_lock(self) -> int:
        self._lock_fd = os.open(f"{self.path}.lock", os.O_WRONLY | os.O_CREAT | _CLOEXEC, 0o600)
        return self._lock_fd

    def _close_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines) in one write, rotating first if it would pass the limit.

        After ``close()`` it still appends (a record of a span ending while the program exits),
        opening the file for that write alone, never rotating."""
        with self._lock:
            if self._closed:
                self._append_after_close(data)
                return
            # With rotation off too: another process may rotate this path (mixed settings).
            lock_fd = self._lock_fd
            if lock_fd is None:
                try:
                    lock_fd = self._open_lock()
                except OSError:  # a read-only directory, say: the file may still take records
                    _write_all(self._checked_fd(), data)
                    return
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                seen = os.fstat(lock_fd).st_size
                if seen != self._seen_rotation:  # another process rotated: write to the new file
                    self._seen_rotation = seen
                    self._open()
                fd = self._checked_fd()
                if self.max_bytes and (
                    self._size + self._unmeasured + len(data) > self.max_bytes
                    or self._unmeasured > self._measure_every
                ):
                    self._size, self._unmeasured = os.fstat(fd).st_size, 0  # others' writes too
                    if self._size and self._size + len(data) > self.max_bytes:
                        self._rotate(lock_fd)
                        fd = self._checked_fd()
                _write_all(fd, data)
                self._unmeasured += len(data)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _append_after_close(self, data: bytes) -> None:
        """One append after close(): under the protocol's lock, to the path's file of the moment."""
        try:
            lock_fd: int | None = self._open_lock()
        except OSError:
            lock_fd = None
        try:
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, _FLAGS, 0o600)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        finally:
            self._close_lock()  # releases the flock

    def _checked_fd(self) -> int:
        """The descriptor, reopened (at most once a second) if the file was moved or removed."""
        now = time.monotonic()
        if self._fd is not None and now < self._next_check:
            return self._fd
        self._next_check = now + _REOPEN_CHECK_INTERVAL_S
        try:
            stat = os.stat(self.path)
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except OSError:
            current = None
        if self._fd is None or current != self._inode:
            self._open()
        assert self._fd is not None
        return self._fd

    def _rotate(self, lock_fd: int) -> None:
        """Rename the full file out of the way and start a new one (flock held)."""
        stem, suffix = _split(self.path)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{stem}.{stamp}{suffix}")
        extra = 0
        while target.exists() or target.with_name(target.name + ".gz").exists():
            extra += 1
            target = self.path.with_name(f"{stem}.{stamp}-{extra}{suffix}")
        # Counted before the rename: if counting fails, nothing moved; if the rename fails, the
        # others only reopen the same file.
        self._seen_rotation = os.fstat(lock_fd).st_size + 1
        os.ftruncate(lock_fd, self._seen_rotation)
        os.rename(self.path, target)
        self._open()
        self.rotations += 1
        self._request_compression()

    # --- compressing, off the writer's path -------------------------------------------------------

    def _request_compression(self) -> None:
        with self._work:
            self._requests += 1
            if self._compressor is None or not self._compressor.is_alive():
                self._compressor = threading.Thread(
                    target=self._compress_forever, name="steptrace-rotate", daemon=True
                )
                self._compressor.start()
            self._work.notify()

    def _compress_forever(self) -> None:
        while True:
            with self._work:
                while self._done >= self._requests:
                    self._work.wait()
                target = self._requests
            try:
                wait = self.compress_pending()
            except OSError as exc:
                self.compress_error = exc
                wait = 0.0
            if wait > 0:  # a renamed file still written to, or just renamed: come back then
                with self._work:
                    self._work.wait(wait)
                continue
            with self._work:
                self._done = target
                self._work.notify_all()

    def wait_for_compression(self, timeout: float | None = None) -> bool:
        """Block until every rotation so far is compressed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._work:
            while self._done < self._requests:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._work.wait(left)
        return True

    def compress_pending(self) -> float:
        """Compress every renamed file of this log (any process's) nothing wrote to for
        ``_QUIET_BEFORE_COMPRESS_S``, then keep ``backups`` gzips; returns the seconds until the
        next renamed file left is quiet (0.0: none left)."""
        wait = 0.0
        for path in rotated_files(self.path):
            if path != self.path and path.suffix != ".gz":
                left = _not_quiet_for(path)
                if left > 0:
                    wait = min(wait, left) if wait else left
                else:
                    self._compress_one(path)
        backups = [p for p in rotated_files(self.path) if p.suffix == ".gz"]
        for old in backups[: max(0, len(backups) - self.backups)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return wait

    def _compress_one(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:  # another process took it
            return
        with os.fdopen(fd, "rb") as source:
            try:  # the claim: whoever holds the flock compresses; it dies with its process
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            try:
                still_there = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                still_there = False
            if not still_there:  # compressed and removed between our scandir and open
                return
            if self.backups == 0:
                path.unlink()
                return
            final = path.with_name(path.name + ".gz")
            partial = path.with_name(path.name + ".gz.partial")
            out_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, 0o600)
            with (
                os.fdopen(out_fd, "wb") as raw,
                gzip.GzipFile(
                    filename=path.name, mode="wb", fileobj=raw, compresslevel=COMPRESS_LEVEL, mtime=0
                ) as packed,
            ):
                shutil.copyfileobj(source, packed, 1024 * 1024)
            os.replace(partial, final)
            path.unlink()  # a reader scanning now may see both names: records are de-duplicated

    def close(self) -> None:
        """Close the file; wait a little for compression in progress (it resumes next start)."""
        with self._lock:
            self._closed = True
            self._close_fd()
            self._close_lock()
        if self._compressor is not None:
            self.wait_for_compression(_SHUTDOWN_WAIT_S)


@dataclass(frozen=True)
class RotationSettings:
    """When a log rotates (``max_bytes``, 0: never) and how many gzip backups it keeps."""

    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS

    @classmethod
    def resolve(cls, max_bytes: int | None, backups: int | None) -> RotationSettings:
        """From configure()'s arguments, else ``STEPTRACE_JSONL_MAX_BYTES`` / ``_BACKUPS``."""
        if max_bytes is None:
            size = os.environ.get("STEPTRACE_JSONL_MAX_BYTES", "").strip()
            max_bytes = parse_size("STEPTRACE_JSONL_MAX_BYTES", size) if size else DEFAULT_MAX_BYTES
        else:
            max_bytes = parse_size("jsonl_max_bytes", max_bytes)
        if backups is None:
            count = os.environ.get("STEPTRACE_JSONL_BACKUPS", "").strip()
            backups = parse_count("STEPTRACE_JSONL_BACKUPS", count) if count else DEFAULT_BACKUPS
        elif isinstance(backups, int) and not isinstance(backups, bool):
            backups = parse_count("jsonl_backups", backups)
        else:
            raise ConfigError(f"jsonl_backups={backups!r} is not a number of files (0 or more)")
        return cls(max_bytes, backups)
