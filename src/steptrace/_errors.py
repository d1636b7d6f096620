"""Errors steptrace raises into user code: only from configure(), never on the hot path."""

from __future__ import annotations


class ConfigError(ValueError):
    """A steptrace setting is unusable (unwritable log path, malformed endpoint, unknown protocol)."""
