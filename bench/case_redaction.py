"""What redaction costs per KB of captured text, on ordinary and on adversarial values.

    .venv-bench/bin/python bench/case_redaction.py

``Redactor().redact_text`` (the built-in detectors every captured value, error message and stack
trace goes through) on 8 KB and 64 KB of: prose with no secret, JSON holding a few secrets, and
the adversarial shapes that once made it quadratic (``X-Api-Key-X-Api-Key-...``, ``key=key=...``,
``eyJeyJ...``) or that cost the most per KB (digit groups checked as card numbers). Linear cost
shows as the same µs per KB at both sizes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Variant, emit, interleave, load_average, summarize, versions

NUMBER = int(os.environ.get("BENCH_NUMBER", "2000")) // 200 or 1
BATCHES = int(os.environ.get("BENCH_BATCHES", "15"))
SIZES = (8_192, 65_536)

PROSE = "The agent searched the catalogue, compared three offers and wrote a short summary. "
SECRETS_JSON = json.dumps(
    {
        "query": "weather in Paris",
        "headers": {"Authorization": "Bearer abc.DEF-123_xyz", "x-goog-api-key": "k" * 39},
        "url": "https://example.com/v1?key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&alt=json",
        "note": "contact ops; password=hunter2",
    }
)
SHAPES = {
    "prose, no secret": PROSE,
    "JSON with secrets": SECRETS_JSON + "\n",
    "X-Api-Key-X-Api-Key-...": "X-Api-Key-",
    "key=key=...": "key=",
    "eyJeyJ...": "eyJ",
    "digit groups (4111 1111 ...)": "4111 ",
    "single digits (1 2 1 2 ...)": "1 2 ",
}


def main() -> None:
    from steptrace._redaction import Redactor

    start = load_average()
    redactor = Redactor()
    variants = []
    for name, unit in SHAPES.items():
        for size in SIZES:
            text = (unit * (size // len(unit) + 1))[:size]
            variants.append(
                Variant(f"{name}, {size // 1024} KB", lambda text=text: redactor.redact_text(text))
            )
    timed = interleave(variants, number=NUMBER, batches=BATCHES)
    result = summarize(timed)
    per_kb = {
        name: {
            str(size // 1024): result[f"{name}, {size // 1024} KB"]["median_us"] / (size / 1024)
            for size in SIZES
        }
        for name in SHAPES
    }
    emit(
        {
            "case": "redaction",
            "number": NUMBER,
            "batches": BATCHES,
            "versions": versions("steptrace"),
            "load_average_start": start,
            "variants": result,
            "us_per_kb": per_kb,
        }
    )


if __name__ == "__main__":
    main()
