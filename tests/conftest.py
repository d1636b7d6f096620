"""Suite-wide settings: steptrace's internal errors re-raise here, so bugs cannot hide."""

from __future__ import annotations

import os

os.environ["STEPTRACE_RAISE_INTERNAL_ERRORS"] = "1"
