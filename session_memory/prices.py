"""What tokens cost: per-million-token prices from genai-prices' bundled table (offline,
maintained upstream and updated monthly), under the user's `[prices."MODEL"]` overrides.

A model neither the table nor the config knows has no price: its cost is None, never 0.
Some models charge more once a request's prompt passes a threshold (200k tokens, say);
usage rows keep each response's `prompt_over` class (see PROMPT_TIERS) so the right tier
applies to hours that add many responses up.
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import functools
import importlib.util
import json
from dataclasses import astuple, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from session_memory import safe_write

PROMPT_TIERS = (32_000, 100_000, 128_000, 199_999, 200_000, 256_000, 272_000, 512_000,
                524_288, 1_000_000)
"""Every prompt-size threshold the price table uses (a test keeps this in step with it).
A response's class is the largest of these its prompt is over (else 0)."""

PRICED_FIELDS = ("input", "output", "cache_creation", "cache_creation_1h", "cache_read")
"""Token fields with a price each, per million. `cache_creation` holds every cache write;
`cache_creation_1h` the part of it written for an hour (dearer), where a tool says so."""


def prompt_class(prompt_tokens: int) -> int:
    """The largest tier threshold `prompt_tokens` is over, or 0."""
    below = bisect.bisect_left(PROMPT_TIERS, prompt_tokens)  # how many it is over
    return PROMPT_TIERS[below - 1] if below else 0


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens of each kind, and where the numbers came from."""

    input: float
    output: float
    cache_creation: float
    cache_creation_1h: float
    cache_read: float
    source: str
    """"config" or "genai-prices VERSION: provider/model"."""

    def cost(self, input: int, output: int, cache_creation: int, cache_creation_1h: int,
             cache_read: int) -> float:
        """Cost in USD; `cache_creation_1h` is the part of `cache_creation` that is dearer."""
        five_minute = max(cache_creation - cache_creation_1h, 0)
        return (input * self.input + output * self.output + five_minute * self.cache_creation
                + cache_creation_1h * self.cache_creation_1h
                + cache_read * self.cache_read) / 1_000_000


OVERRIDE_KEYS = {"input", "output", "cache_write", "cache_write_1h", "cache_read"}


def check_overrides(table: object) -> dict[str, dict[str, float]]:
    """`[prices."MODEL"]` tables as validated numbers (raises ValueError saying what is
    wrong). `input` and `output` are required; cache prices default to `input`'s, the
    hour-long cache write to `cache_write`'s."""
    if not isinstance(table, dict):
        raise ValueError("prices: expected tables like [prices.\"MODEL\"]")
    checked: dict[str, dict[str, float]] = {}
    for model, entry in table.items():
        if not isinstance(entry, dict):
            raise ValueError(f"prices.{model}: expected a table of USD per million tokens")
        for key, value in entry.items():
            if key not in OVERRIDE_KEYS:
                raise ValueError(f"prices.{model}.{key}: unknown key (expected "
                                 f"{', '.join(sorted(OVERRIDE_KEYS))})")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"prices.{model}.{key}: expected USD per million tokens "
                                 f"(a number, 0 or more), got {value!r}")
        for key in ("input", "output"):
            if key not in entry:
                raise ValueError(f"prices.{model}.{key}: required (USD per million tokens)")
        given = {k: float(v) for k, v in entry.items()}
        write = given.get("cache_write", given["input"])
        checked[str(model)] = {"input": given["input"], "output": given["output"],
                               "cache_write": write,
                               "cache_write_1h": given.get("cache_write_1h", write),
                               "cache_read": given.get("cache_read", given["input"])}
    return checked


class PriceBook:
    """Prices by model name and prompt class, looked up once each.

    With a `cache_file`, what the table said is kept there, under a stamp of the table's
    file: importing genai-prices (and pydantic) costs more than a whole usage report, so
    a report whose models are all known never imports it; a new genai-prices release
    (another table file) starts the cache afresh."""

    def __init__(self, overrides: dict[str, dict[str, float]] | None = None,
                 cache_file: Path | None = None) -> None:
        self.overrides = overrides or {}
        self._cache: dict[tuple[str, int], Price | None] = {}
        self.cache_file = cache_file
        self._stamp = _table_stamp() if cache_file else None
        self._table: dict[str, list[Any] | None] = self._load() if cache_file else {}
        self._dirty = False

    def price(self, model: str, prompt_over: int = 0) -> Price | None:
        key = (model, prompt_over)
        if key not in self._cache:
            self._cache[key] = self._override(model) or self._from_table(model, prompt_over)
        return self._cache[key]

    def _from_table(self, model: str, prompt_over: int) -> Price | None:
        name = f"{model}\0{prompt_over}"
        if name in self._table:
            kept = self._table[name]
            return None if kept is None else Price(*kept)
        found = _table_price(model, prompt_over)
        if self.cache_file is not None:
            self._table[name] = None if found is None else list(astuple(found))
            self._dirty = True
        return found

    def _load(self) -> dict[str, list[Any] | None]:
        assert self.cache_file is not None
        try:
            doc = json.loads(self.cache_file.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or doc.get("stamp") != self._stamp or self._stamp is None:
            return {}
        table = doc.get("prices")
        return table if isinstance(table, dict) else {}

    def save(self) -> None:
        """Keep what was looked up in the table for the next report (best effort: a cache
        that cannot be written is only slower next time)."""
        if not self._dirty or self.cache_file is None or self._stamp is None:
            return
        doc = json.dumps({"stamp": self._stamp, "prices": self._table}).encode()
        with contextlib.suppress(OSError):
            safe_write.replace_file(self.cache_file, [doc])
            self._dirty = False

    def _override(self, model: str) -> Price | None:
        entry = self.overrides.get(model)
        if entry is None:  # then a pattern, the longest (most specific) first
            for pattern in sorted(self.overrides, key=len, reverse=True):
                if fnmatch.fnmatchcase(model, pattern):
                    entry = self.overrides[pattern]
                    break
        if entry is None:
            return None
        return Price(entry["input"], entry["output"], entry["cache_write"],
                     entry["cache_write_1h"], entry["cache_read"], "config")


def _table_stamp() -> str | None:
    """Size and mtime of the installed price table's file, found without importing it."""
    try:
        spec = importlib.util.find_spec("genai_prices")
        if spec is None or spec.origin is None:
            return None
        info = (Path(spec.origin).parent / "data.py").stat()
    except (OSError, ImportError, ValueError):
        return None
    return f"{info.st_size}:{info.st_mtime_ns}"


@functools.lru_cache(maxsize=4096)
def _table_price(model: str, prompt_over: int) -> Price | None:
    if not model or model == "unknown":
        return None
    import genai_prices  # 0.15 s to import its table: only when a cost is asked for
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    try:
        provider, info = snapshot.find_provider_model(model, None, None, None)
    except LookupError:
        if "/" not in model:
            return None
        try:  # "vendor/model", as tools that go through LiteLLM name one
            provider, info = snapshot.find_provider_model(model.rsplit("/", 1)[1], None,
                                                          None, None)
        except LookupError:
            return None
    from datetime import UTC, datetime

    prices = info.get_prices(datetime.now(UTC))
    rates = {name: _rate(getattr(prices, name, None), prompt_over)
             for name in ("input_mtok", "output_mtok", "cache_write_mtok",
                          "cache_write_1h_mtok", "cache_read_mtok")}
    if rates["input_mtok"] is None or rates["output_mtok"] is None:
        return None
    write = rates["cache_write_mtok"] if rates["cache_write_mtok"] is not None \
        else rates["input_mtok"]
    return Price(rates["input_mtok"], rates["output_mtok"], write,
                 rates["cache_write_1h_mtok"] if rates["cache_write_1h_mtok"] is not None
                 else write,
                 rates["cache_read_mtok"] if rates["cache_read_mtok"] is not None
                 else rates["input_mtok"],
                 f"genai-prices {genai_prices.__version__}: {provider.id}/{info.id}")


def _rate(price: Any, prompt_over: int) -> float | None:
    """A price as USD per million; a tiered one at the tier a prompt of more than
    `prompt_over` tokens falls in (the table's tiers apply when the prompt is over start)."""
    if price is None:
        return None
    if isinstance(price, Decimal | int | float):
        return float(price)
    applicable = price.base
    for tier in reversed(price.tiers):
        if prompt_over + 1 > tier.start:
            applicable = tier.price
            break
    return float(applicable)


def table_tier_starts() -> set[int]:
    """Every tier threshold in the bundled table (for the test that checks PROMPT_TIERS)."""
    from genai_prices.data_snapshot import get_snapshot

    starts: set[int] = set()
    for provider in get_snapshot().providers:
        for model in provider.models:
            variants = model.prices if isinstance(model.prices, list) else [model.prices]
            for variant in variants:
                prices = getattr(variant, "prices", variant)
                for value in vars(prices).values():
                    for tier in getattr(value, "tiers", None) or ():
                        starts.add(int(tier.start))
    return starts
