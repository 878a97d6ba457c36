"""The price book: the table's prices, overrides, and the cache that spares the import."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from session_memory import prices


def test_table_override_and_unknown() -> None:
    book = prices.PriceBook({"claude-opus-*": {"input": 1.0, "output": 2.0, "cache_write": 3.0,
                                               "cache_write_1h": 4.0, "cache_read": 0.5}})
    opus = book.price("claude-opus-4-7")
    assert opus is not None and opus.source == "config"
    # 1M each: input $1, output $2, 5-minute writes $3 (of 3M written, 1M for an hour: $4).
    assert opus.cost(10**6, 10**6, 3 * 10**6, 10**6, 10**6) == pytest.approx(1 + 2 + 6 + 4 + .5)
    haiku = book.price("claude-haiku-4-5-20251001")
    assert haiku is not None and haiku.source.startswith("genai-prices ")
    assert (haiku.input, haiku.output, haiku.cache_creation, haiku.cache_read) == (
        1.0, 5.0, 1.25, 0.1)
    assert book.price("no-such-model-anywhere") is None


def test_cache_file_spares_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "prices-cache.json"
    first = prices.PriceBook(cache_file=cache)
    expected = first.price("gpt-5-codex")
    assert first.price("no-such-model-anywhere") is None
    first.save()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    def no_table(model: str, prompt_over: int) -> None:
        raise AssertionError(f"the table was read for {model}")

    monkeypatch.setattr(prices, "_table_price", no_table)
    again = prices.PriceBook(cache_file=cache)
    assert again.price("gpt-5-codex") == expected
    assert again.price("no-such-model-anywhere") is None  # unknown is remembered too
    # Another table (a new genai-prices release) starts afresh.
    doc = json.loads(cache.read_text())
    cache.write_text(json.dumps({**doc, "stamp": "other"}))
    with pytest.raises(AssertionError, match="the table was read"):
        prices.PriceBook(cache_file=cache).price("gpt-5-codex")
