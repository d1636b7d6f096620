"""An offline agent loop traced by steptrace: a scripted model, two tools, one tool failure the
agent recovers from, ending with ``end_turn``.

    python examples/quickstart.py          # writes ./steptrace-logs/steps.jsonl, prints the summary

The agent itself ships inside the package (``src/steptrace/_demo.py``, read it there) so that
``steptrace demo`` works from an installed wheel too; this file runs the same code.
Set OTEL_EXPORTER_OTLP_ENDPOINT to also send the traces to a collector.
"""

from __future__ import annotations

from steptrace._demo import call_model, convert_currency, main, run_agent, search_documents

__all__ = ["call_model", "convert_currency", "main", "run_agent", "search_documents"]

if __name__ == "__main__":
    main()
