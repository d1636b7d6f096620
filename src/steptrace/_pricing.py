"""What each model call cost, in USD, from its provider, model and token counts.

Prices come from ``genai-prices`` (the ``cost`` extra), whose bundled price data is read offline:
nothing here fetches prices. A prices file adds or overrides prices for private or discounted
models. The library is imported on first use, so a log without model calls never pays for it.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from steptrace._errors import LogError

# GenAI semantic-convention provider names -> genai-prices provider ids.
_PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "azure.ai.inference": "azure",
    "azure.ai.openai": "azure",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "groq": "groq",
    "mistral_ai": "mistral",
    "perplexity": "perplexity",
    "x_ai": "x-ai",
}

PricesSource = str | os.PathLike[str] | Mapping[str, Any]
"""A prices file's path, or the mapping it holds (see :func:`read_prices`)."""


class PricesError(LogError):
    """A prices file that cannot be used; the message is one line (the CLI exits 2)."""


def _genai_prices() -> Any:
    """The genai-prices package, or None when the ``cost`` extra is not installed."""
    try:
        import genai_prices
    except ImportError:
        return None
    return genai_prices


def cost_available() -> bool:
    """Whether genai-prices is installed (``pip install 'steptrace[cost]'``)."""
    return _genai_prices() is not None


def _price_value(where: str, field: str, value: Any) -> Decimal:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise PricesError(f"{where}: {field} must be a non-negative number of USD, got {value!r}")
    return Decimal(str(value))


def _model_price(where: str, fields: Mapping[str, Any]) -> Any:
    """A genai-prices ``ModelPrice`` from ``{"input_mtok": 1.0, ...}``; unknown fields are errors."""
    from genai_prices.types import ModelPrice, Usage

    if not fields:
        raise PricesError(f'{where}: no prices given (e.g. {{"input_mtok": 1.0, "output_mtok": 2.0}})')
    values = {name: _price_value(where, name, value) for name, value in fields.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        price = ModelPrice(**values)
        price.calc_price(Usage(input_tokens=1, output_tokens=1))
    unknown = [str(w.message) for w in caught if "price key" in str(w.message)]
    if unknown:
        raise PricesError(
            f"{where}: {unknown[0]} (genai-prices names: input_mtok, output_mtok, cache_read_mtok, ...)"
        )
    return price


def read_prices(source: PricesSource) -> dict[tuple[str | None, str], Any]:
    """Price overrides keyed by (provider or None, lower-case model id), from a file or mapping.

    The JSON maps a model id to its prices in USD per million tokens, with genai-prices' field
    names, optionally under a provider id::

        {"acme-private-llm-7b": {"input_mtok": 1.0, "output_mtok": 2.0, "cache_read_mtok": 0.1},
         "openai": {"gpt-4o": {"input_mtok": 2.0, "output_mtok": 8.0}}}

    Raises :class:`PricesError` (one line) for a file that cannot be read or used.
    """
    if _genai_prices() is None:
        raise PricesError("prices need genai-prices: pip install 'steptrace[cost]'")
    if isinstance(source, Mapping):
        where, document = "prices", source
    else:
        where = os.fspath(source)
        try:
            text = Path(where).read_text(encoding="utf-8")
        except OSError as exc:
            raise PricesError(f"{where}: cannot read prices file ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise PricesError(f"{where}: prices file is not UTF-8 text") from exc
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PricesError(f"{where}: prices file is not valid JSON ({exc})") from exc
    if not isinstance(document, Mapping):
        raise PricesError(
            f"{where}: prices must be a JSON object mapping a model id to its prices, e.g. "
            '{"acme-llm": {"input_mtok": 1.0, "output_mtok": 2.0}}'
        )
    out: dict[tuple[str | None, str], Any] = {}
    for key, value in document.items():
        if not isinstance(value, Mapping):
            raise PricesError(f"{where}: {key!r} must map to an object of prices, got {value!r}")
        if value and all(isinstance(inner, Mapping) for inner in value.values()):
            provider = _PROVIDER_IDS.get(str(key).lower(), str(key).lower())
            for model, fields in value.items():
                out[(provider, str(model).lower())] = _model_price(f"{where}: {key}/{model}", fields)
        else:
            out[(None, str(key).lower())] = _model_price(f"{where}: {key}", value)
    return out


@dataclass(frozen=True)
class _Linear:
    """One price table, as a constant plus a price per token of each kind, for one tier bucket.

    genai-prices costs are linear in the token counts within a tier (the tier is chosen by the
    request's total input tokens), so a few probes through the library's own ``calc_price`` give
    exact per-token prices; pricing a call is then a few float multiplications (~1 µs) instead of
    the library's ~90 µs, equal to its result within float rounding (1e-15 relative).
    """

    fee: float
    uncached_input: float
    cache_read: float
    cache_write: float
    output: float
    reasoning: float


def _probe(price: Any, tokens: int) -> _Linear:
    """Per-token prices of ``price`` in the tier bucket that ``tokens`` input tokens fall in."""
    from genai_prices.types import Usage

    def total(**usage: int) -> Decimal:
        return Decimal(price.calc_price(Usage(**usage))["total_price"])

    # A per-request fee (requests_kcount) is the price of a call without tokens.
    fee = total(input_tokens=0)
    base = total(input_tokens=tokens)
    return _Linear(
        fee=float(fee),
        uncached_input=float((base - fee) / tokens),
        cache_read=float((total(input_tokens=tokens, cache_read_tokens=tokens) - fee) / tokens),
        cache_write=float((total(input_tokens=tokens, cache_write_tokens=tokens) - fee) / tokens),
        output=float(total(input_tokens=tokens, output_tokens=1) - base),
        reasoning=float(total(input_tokens=tokens, output_tokens=1, output_reasoning_tokens=1) - base),
    )


class Pricer:
    """Prices model calls; one per :func:`~steptrace.analysis.load` (it caches lookups).

    >>> Pricer().price("openai", "gpt-4o", 1000, 100)  # doctest: +SKIP
    0.0035
    """

    def __init__(self, prices: PricesSource | None = None) -> None:
        self._overrides = read_prices(prices) if prices is not None else {}
        self._library = _genai_prices()
        self._models: dict[tuple[str | None, str], tuple[Any, Any] | None] = {}
        self._times: dict[str, datetime] = {}
        self._linear: dict[tuple[int, int], tuple[Any, _Linear | None]] = {}
        self._tiers: dict[int, tuple[Any, tuple[int, ...]]] = {}
        self._resolved: dict[tuple[str | None, str, str], tuple[Any, tuple[int, ...]] | None] = {}

    @property
    def available(self) -> bool:
        """Whether any price data is at hand (genai-prices installed, or overrides given)."""
        return self._library is not None or bool(self._overrides)

    def _lookup(self, provider: str | None, model: str) -> tuple[Any, Any] | None:
        """(override price or None, genai-prices ModelInfo or provider-and-model) for a model."""
        key = (provider, model)
        if key in self._models:
            return self._models[key]
        provider_id = _PROVIDER_IDS.get(provider.lower(), provider.lower()) if provider else None
        model_ref = model.lower()
        found: tuple[Any, Any] | None = None
        override = self._overrides.get((provider_id, model_ref)) or self._overrides.get((None, model_ref))
        if override is not None:
            found = (override, None)
        elif self._library is not None:
            from genai_prices import data_snapshot

            snapshot = data_snapshot.get_snapshot()
            try:
                try:
                    found = (None, snapshot.find_provider_model(model_ref, None, provider_id, None))
                except LookupError:
                    if provider_id is None or provider_id in _PROVIDER_IDS.values():
                        raise
                    # A provider genai-prices does not know: find the model by its name alone.
                    found = (None, snapshot.find_provider_model(model_ref, None, None, None))
            except LookupError:
                found = None
        self._models[key] = found
        return found

    def _when(self, started_at: str | None) -> datetime:
        # Prices change by date; a minute's precision is plenty and caches well.
        minute = started_at[:16] if started_at else ""
        when = self._times.get(minute)
        if when is None:
            try:
                when = datetime.fromisoformat(minute).replace(tzinfo=timezone.utc)
            except ValueError:
                when = datetime.now(tz=timezone.utc)
            self._times[minute] = when
        return when

    def _price_table(self, found: tuple[Any, Any], started_at: str | None) -> Any:
        override, provider_model = found
        if override is not None:
            return override
        _, model = provider_model
        return model.get_prices(self._when(started_at))

    def _thresholds(self, table: Any) -> tuple[int, ...]:
        cached = self._tiers.get(id(table))
        if cached is None:
            from genai_prices.types import TieredPrices

            starts = sorted(
                {
                    int(tier.start)
                    for value in vars(table).values()
                    if isinstance(value, TieredPrices)
                    for tier in value.tiers
                }
            )
            cached = self._tiers[id(table)] = (table, tuple(starts))
        return cached[1]

    def _linear_for(self, table: Any, thresholds: tuple[int, ...], input_tokens: int) -> _Linear | None:
        # The tier bucket: how many tier starts the prompt exceeds.
        bucket = bisect.bisect_left(thresholds, input_tokens) if thresholds else 0
        key = (id(table), bucket)
        cached = self._linear.get(key)
        if cached is None:
            probe_tokens = 1 if bucket == 0 else thresholds[bucket - 1] + 1
            linear: _Linear | None = None
            if bisect.bisect_left(thresholds, probe_tokens) == bucket:
                linear = _probe(table, probe_tokens)
            # Keep the table alive: its id is part of the key.
            cached = self._linear[key] = (table, linear)
        return cached[1]

    def _resolve(
        self, provider: str | None, model: str, started_at: str | None
    ) -> tuple[Any, tuple[int, ...]] | None:
        """(price table, its tier thresholds) for a model at a time, or None when unknown."""
        found = self._lookup(provider, model)
        if found is None:
            return None
        table = self._price_table(found, started_at)
        return table, self._thresholds(table)

    def price(
        self,
        provider: str | None,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = None,
        cache_creation_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        started_at: str | None = None,
    ) -> float | None:
        """The call's cost in USD, or None when its model has no known price or usage is missing.

        ``input_tokens`` is the whole prompt, cache reads and writes included (the GenAI
        conventions' meaning, and genai-prices'); ``output_tokens`` includes reasoning tokens.
        """
        # The hot path of pricing a whole log: one cache lookup per call, then arithmetic.
        if type(model) is not str or not model:
            return None
        if type(input_tokens) is not int and type(output_tokens) is not int:
            return None  # no usage reported: unknown, never $0
        inputs = input_tokens if type(input_tokens) is int and input_tokens > 0 else 0
        outputs = output_tokens if type(output_tokens) is int and output_tokens > 0 else 0
        if type(provider) is not str:
            provider = None
        key = (provider, model, started_at[:16] if type(started_at) is str else "")
        try:
            resolved = self._resolved[key]
        except KeyError:
            try:
                resolved = self._resolve(provider, model, started_at)
            except Exception:  # price data that cannot be read prices nothing
                resolved = None
            self._resolved[key] = resolved
        if resolved is None:
            return None
        cache_read = cache_read_tokens if type(cache_read_tokens) is int and cache_read_tokens > 0 else 0
        cache_write = (
            cache_creation_tokens if type(cache_creation_tokens) is int and cache_creation_tokens > 0 else 0
        )
        reasoning = reasoning_tokens if type(reasoning_tokens) is int and reasoning_tokens > 0 else 0
        try:
            return self._price(resolved, inputs, outputs, cache_read, cache_write, reasoning)
        except Exception:  # the price data cannot price this usage: unknown, never a crash
            return None

    def _price(
        self,
        resolved: tuple[Any, tuple[int, ...]],
        inputs: int,
        outputs: int,
        cache_read: int,
        cache_write: int,
        reasoning: int,
    ) -> float:
        table, thresholds = resolved
        linear = self._linear_for(table, thresholds, inputs)
        if linear is None or cache_read + cache_write > inputs or reasoning > outputs:
            # Outside what the probes cover: the library prices it (or raises: unpriced).
            from genai_prices.types import Usage

            usage = Usage(
                input_tokens=inputs,
                output_tokens=outputs,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                output_reasoning_tokens=reasoning,
            )
            return float(table.calc_price(usage)["total_price"])
        return (
            linear.fee
            + (inputs - cache_read - cache_write) * linear.uncached_input
            + cache_read * linear.cache_read
            + cache_write * linear.cache_write
            + (outputs - reasoning) * linear.output
            + reasoning * linear.reasoning
        )

    def price_record(self, record: Mapping[str, Any]) -> float | None:
        """The cost of one ``llm_call`` step record (see :meth:`price`)."""
        get = record.get
        return self.price(
            get("provider"),
            get("model") or get("request_model"),
            get("input_tokens"),
            get("output_tokens"),
            get("cache_read_input_tokens"),
            get("cache_creation_input_tokens"),
            get("reasoning_tokens"),
            get("started_at"),
        )


# --- pricing at run time: configure(record_cost=True) ----------------------------------------------

_runtime_pricer: Pricer | None = None
_minute: tuple[int, str] = (-1, "")


def warm_up_runtime_pricing() -> bool:
    """Load the price data for ``record_cost`` (at configure time); False, with a warning, when
    genai-prices is not installed."""
    global _runtime_pricer
    if _genai_prices() is None:
        warnings.warn(
            "steptrace: record_cost=True needs genai-prices (pip install 'steptrace[cost]'); "
            "model calls are traced without cost",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if _runtime_pricer is None:
        pricer = Pricer()
        pricer.price("openai", "gpt-4o", 1, 1)  # imports the bundled data and builds its index
        _runtime_pricer = pricer
    return True


def price_now(
    provider: str | None,
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = None,
    cache_creation_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> float | None:
    """The cost of a model call that just finished, at today's prices (``record_cost``)."""
    pricer = _runtime_pricer
    if pricer is None:
        return None
    global _minute
    minute, stamp = _minute
    if int(time.time() // 60) != minute:  # prices change by date: the minute is precise enough
        minute = int(time.time() // 60)
        stamp = datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M")
        _minute = (minute, stamp)
    return pricer.price(
        provider,
        model,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_creation_tokens,
        reasoning_tokens,
        stamp,
    )
