"""Size-based rotation for the append-only JSONL files (the step log, the OTLP spill file).

``RotatingFile.append(data)`` writes one whole chunk with one ``O_APPEND`` write: in the steady
state that write is its only system call. Several processes may append to one path whatever their
own limits (rotation off too). Past the limit a writer takes an ``flock`` on ``<file>.lock``,
renames the file to ``<stem>.<UTC time>.jsonl`` and starts a new one. Two things keep every
record whole and in a file that is kept:

- every writer holds a shared ``flock`` on the file it appends to for as long as it has it open,
  and a renamed file is compressed (then removed) only by whoever gets an exclusive one, so only
  once no writer that may still append to it has it open: a writer that wrote to a file just
  renamed loses nothing, its record is in that file when it is compressed;
- a rotation counter in the lock file's first eight bytes, memory-mapped by every writer, is
  bumped before the rename: a writer compares it with the value it opened the file at before
  each write (a memory read, no system call) and reopens the path when it changed.

A background thread compresses a renamed file to ``<stem>.<UTC time>.jsonl.gz`` once nothing has
written to it for 1.5 s (an older writer that ignores the protocol still appends there for up to
a second) and no writer holds it, and keeps the newest ``backups``. Every name ends in ``.jsonl``
or ``.jsonl.gz``: reading the directory reads the whole set.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import mmap
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
# A renamed file a writer of another process still holds is tried again this often.
_HELD_RETRY_S = 0.5
# The lock file's first bytes: the rotation counter (little-endian), mapped by every writer.
_COUNTER_BYTES = 8
# Opening the live file: tries before giving up while other processes rotate it under us.
_OPEN_TRIES = 100
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
        self.appends = 0  # chunks appended
        self.compress_error: OSError | None = None
        self.rotate_error: OSError | None = None  # the last rotation that failed (records kept)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._lock_fd: int | None = None
        self._counter: mmap.mmap | None = None  # the lock file's rotation counter, mapped
        self._seen_counter = b""  # its value when the file in _fd was opened
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
        self._map_counter()
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
        # The flock on the lock file belongs to the open file description the parent shares: take
        # our own. The data file's shared flock is shared with the parent too, which is what it is
        # for (held while either may append); the counter's mapping is inherited.
        self._lock = threading.Lock()
        self._work = threading.Condition(threading.Lock())
        self._compressor = None
        self._requests = self._done = 0
        self._close_lock()

    # --- writing ----------------------------------------------------------------------------------
    #
    # The protocol every writer follows, whatever its own limit (the module docstring says why):
    # 1. open the path, take a shared flock on it (non-blocking: a file under an exclusive one is
    #    being compressed, so it was renamed), and check the path still names it (a file
    #    compressed and removed between our open and our flock would take records into nowhere);
    # 2. before each write, compare the mapped counter with the value read before that open;
    #    changed: go to 1. Once a second the path is checked too (a rotation by a writer without
    #    the counter, or a log removed by hand).
    # 3. rotating: under the lock file's exclusive flock, bump the counter (and grow the lock file
    #    by a byte: the counter writers of the previous protocol read), then rename, then 1.
    # A counter write that fails (a full disk) skips that rotation; the record is written anyway.

    def _map_counter(self) -> None:
        """Map the lock file's counter (made 8 bytes long if shorter); left None if we cannot.

        Through a descriptor of its own and without the flock: a caller may hold the flock on
        ``_lock_fd`` (a rotation), which a flock here would release or wait for forever.
        """
        mapping: mmap.mmap | None = None
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size < _COUNTER_BYTES:
                    # Zeros after what is there, written (not ftruncate's hole): a counter another
                    # process wrote meanwhile stays, and the page is allocated now. Reading a hole
                    # through the mapping makes tmpfs allocate it, and on a full tmpfs that fault
                    # is SIGBUS in the user's process; a full disk here fails this write instead.
                    os.pwrite(fd, bytes(_COUNTER_BYTES - size), size)
                # Read-only, and the file never shrinks below 8 bytes: reads cannot fault (a
                # truncation by hand to under 8 bytes would: SIGBUS).
                mapping = mmap.mmap(fd, _COUNTER_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
            finally:
                os.close(fd)  # the mapping keeps its own reference
        except (OSError, ValueError):  # a read-only directory, say: the once-a-second check remains
            mapping = None
        old, self._counter = self._counter, mapping
        if old is not None:
            with contextlib.suppress(BufferError, OSError):
                old.close()

    def _open(self) -> None:
        """Open the live file under the protocol's shared flock (step 1 above)."""
        self._close_fd()  # first: a failed open must not leave us writing to a file moved away
        self.path.parent.mkdir(parents=True, exist_ok=True)
        counter = self._counter
        for _ in range(_OPEN_TRIES):
            seen = counter[:_COUNTER_BYTES] if counter is not None else b""
            fd = os.open(self.path, _FLAGS, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # being compressed: renamed since our open
                    os.close(fd)
                    continue
                except OSError:  # no flock here (some network filesystems): the quiet rule remains
                    pass
                stat = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                    live = (now.st_dev, now.st_ino) == (stat.st_dev, stat.st_ino)
                except FileNotFoundError:
                    live = False
            except BaseException:
                os.close(fd)
                raise
            if not live:
                os.close(fd)
                continue
            self._fd = fd
            self._inode = (stat.st_dev, stat.st_ino)
            self._seen_counter = seen
            self._size = stat.st_size
            self._unmeasured = 0
            return
        raise OSError(f"{self.path} kept being renamed while it was opened")

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:  # closing releases our shared flock (never LOCK_UN: a child shares it)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open_lock(self) -> int:
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o600)
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
            counter = self._counter
            if counter is not None and counter[:_COUNTER_BYTES] != self._seen_counter:
                self._open()  # another process rotated: write to the new file
            fd = self._fd
            if fd is None or time.monotonic() >= self._next_check:
                fd = self._checked_fd()
            size = len(data)
            if self.max_bytes and (
                self._size + self._unmeasured + size > self.max_bytes
                or self._unmeasured > self._measure_every
            ):
                fd = self._rotate_if_full(size)
            written = os.write(fd, data)
            if written != size:  # only on a nearly full disk: the rest, to keep the line whole
                _write_all(fd, data[written:])
            self._unmeasured += size
            self.appends += 1

    def _rotate_if_full(self, size: int) -> int:
        """Measure the file (others' writes too); rotate it if ``size`` more bytes pass the limit."""
        try:
            lock_fd = self._lock_fd if self._lock_fd is not None else self._open_lock()
        except OSError:  # no lock file, no rotation: the records still go to the file
            self._unmeasured = 0
            return self._checked_fd()
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            counter = self._counter
            if counter is not None and counter[:_COUNTER_BYTES] != self._seen_counter:
                self._open()
            fd = self._checked_fd()
            self._size, self._unmeasured = os.fstat(fd).st_size, 0
            if self._size and self._size + size > self.max_bytes:
                try:
                    self._rotate(lock_fd)
                except OSError as exc:  # a full disk, say: this record still goes to the file
                    self.rotate_error = exc
                fd = self._checked_fd()
            return fd
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _append_after_close(self, data: bytes) -> None:
        """One append after close(): under the lock file's flock (no rotation meanwhile), to the
        path's file of the moment."""
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
                self.appends += 1
            finally:
                os.close(fd)
        finally:
            self._close_lock()  # releases the flock

    def _checked_fd(self) -> int:
        """The descriptor, reopened (checked at most once a second) if the file was moved or
        removed without the counter saying so."""
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
            if self._fd is not None:  # moved without the counter: the lock file may be new too
                self._map_counter()
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
        count = int.from_bytes(os.pread(lock_fd, _COUNTER_BYTES, 0).ljust(_COUNTER_BYTES, b"\0"), "little")
        os.pwrite(lock_fd, ((count + 1) % (1 << 64)).to_bytes(_COUNTER_BYTES, "little"), 0)
        os.ftruncate(lock_fd, max(os.fstat(lock_fd).st_size, _COUNTER_BYTES) + 1)
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
        held = 0  # renamed files a writer (of another process) still holds: tried again later
        while True:
            with self._work:
                if held and self._done >= self._requests and not self._closed:
                    self._work.wait(_HELD_RETRY_S)  # or sooner, at a new rotation
                while self._done >= self._requests and not (held and not self._closed):
                    self._work.wait()
                target = self._requests
            try:
                wait, held = self._compress_pass()
            except OSError as exc:
                self.compress_error = exc
                wait, held = 0.0, 0
            if wait > 0:  # a renamed file still written to, or just renamed: come back then
                with self._work:
                    self._work.wait(wait)
                continue
            with self._work:  # what is left is held by others: nothing to wait for here
                self._done = max(self._done, target)
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
        ``_QUIET_BEFORE_COMPRESS_S`` and no writer holds, then keep ``backups`` gzips; returns the
        seconds until the next renamed file left is quiet (0.0: none left to wait for)."""
        return self._compress_pass()[0]

    def _compress_pass(self) -> tuple[float, int]:
        """compress_pending's work; also returns how many renamed files a writer still holds."""
        wait = 0.0
        held = 0
        for path in rotated_files(self.path):
            if path != self.path and path.suffix != ".gz":
                left = _not_quiet_for(path)
                if left > 0:
                    wait = min(wait, left) if wait else left
                elif not self._compress_one(path):
                    held += 1
        backups = [p for p in rotated_files(self.path) if p.suffix == ".gz"]
        for old in backups[: max(0, len(backups) - self.backups)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return wait, held

    def _compress_one(self, path: Path) -> bool:
        """Compress ``path`` and remove it; False if it is held (a writer's shared flock, or
        another process compressing it): try again later."""
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:  # another process took it
            return True
        with os.fdopen(fd, "rb") as source:
            # The claim: whoever holds the exclusive flock compresses; it dies with its process.
            # Writers hold a shared one while they may append: then it is not ours to take yet.
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            try:
                still_there = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                still_there = False
            if not still_there:  # compressed and removed between our scandir and open
                return True
            if self.backups == 0:
                path.unlink()
                return True
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
        return True

    def close(self) -> None:
        """Close the file; wait a little for compression in progress (it resumes next start)."""
        with self._lock:
            self._closed = True
            self._close_fd()
            self._close_lock()
            counter, self._counter = self._counter, None
            if counter is not None:
                with contextlib.suppress(BufferError, OSError):
                    counter.close()
        if self._compressor is not None:
            with self._work:
                self._work.notify_all()  # stop retrying files others hold
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
