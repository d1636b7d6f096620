"""Errors steptrace raises into user code: only from configure() and the analysis API, never on
the hot path."""

from __future__ import annotations


class ConfigError(ValueError):
    """A steptrace setting is unusable (unwritable log path, malformed endpoint, unknown protocol)."""


class LogError(Exception):
    """Input that cannot be read at all (missing path, empty directory, not gzip, no permission).

    The message is one line meant for a person; the CLI prints it and exits 2.
    """
