"""Usage reports over the rows by slot in Tier 2: rows per key with cost, totals, 5-hour
billing blocks, and the per-session figures `sessions` shows.

Tier 2 keeps tokens per session, UTC quarter hour (a slot), model and prompt class
(store/tier2.py); this module only adds them up and prices them (prices.py). Local time is
the process's (TZ).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from session_memory.prices import Price, PriceBook
from session_memory.store.tier2 import SLOT_SECONDS, SLOTS_PER_HOUR

FIELDS = ("input", "output", "cache_creation", "cache_read", "reasoning")
"""The token columns of a usage row. `input` never includes cache reads; `output` includes
reasoning, which is shown on its own too."""
BY = ("day", "week", "month", "model", "source", "project", "session")
BLOCK_HOURS = 5
"""A billing window (a format declares BILLING_BLOCK_HOURS): a block starts at the hour of
its first response and ends 5 hours later; 5 hours without a response end it sooner
(ccusage draws them so)."""

_GROUP_FIELDS = ("input", "output", "cache_creation", "cache_creation_1h", "cache_read",
                 "reasoning", "responses")


class _Sum:
    """Token sums and cost of one row (or one model within it)."""

    __slots__ = ("counts", "cost", "unpriced", "prices")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_GROUP_FIELDS, 0)
        self.cost = 0.0
        self.unpriced: set[str] = set()
        self.prices: dict[str, str | None] = {}

    def add(self, model: str, counts: Sequence[int], price: Price | None) -> None:
        mine = self.counts
        for name, n in zip(_GROUP_FIELDS, counts, strict=True):
            mine[name] += n
        if price is None:
            self.prices.setdefault(model, None)
            if any(counts[:6]):
                self.unpriced.add(model)
            return
        self.prices[model] = price.source
        self.cost += price.cost(*counts[:5])

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {f: self.counts[f] for f in FIELDS}
        row["cost_usd"] = None if self.unpriced else round(self.cost, 6)
        row["responses"] = self.counts["responses"]
        row["prices"] = dict(sorted(self.prices.items()))
        if self.unpriced:
            row["unpriced_models"] = sorted(self.unpriced)
            row["cost_usd_priced_part"] = round(self.cost, 6)
        return row


def rows(groups: Iterable[Sequence[Any]], sessions: dict[Any, tuple[int, int]],
         book: PriceBook, by: str, *, breakdown: bool = False) -> list[dict[str, Any]]:
    """`usage --json` rows from Tier2.usage_groups. `cost_usd` is None where any model
    that spent tokens in the row has no known price; `prices` says which price each model
    used; `models` (with `breakdown`) gives each model's part of the row."""
    totals: dict[Any, _Sum] = {}
    parts: dict[Any, dict[str, _Sum]] = {}
    for key, model, prompt_over, *counts in groups:
        price = book.price(model, prompt_over)
        totals.setdefault(key, _Sum()).add(model, counts, price)
        if breakdown:
            parts.setdefault(key, {}).setdefault(model, _Sum()).add(model, counts, price)
    out = []
    for key, total in totals.items():
        n, whole = sessions.get(key, (0, 0))
        row = {"key": key if key is not None else "unknown", "sessions": n, **total.as_row()}
        if whole:
            row["whole_session_estimates"] = whole
        if breakdown:
            row["models"] = [{"model": m, **s.as_row()} for m, s in sorted(
                parts[key].items(), key=lambda kv: -tokens(kv[1].counts))]
        out.append(row)
    if by in ("day", "week", "month"):
        return sorted(out, key=lambda r: r["key"])
    return sorted(out, key=lambda r: (-tokens(r), r["key"]))


def tokens(counts: dict[str, Any]) -> int:
    """The tokens a row (or its counts) moved: reasoning is inside output already."""
    return sum(counts[f] for f in ("input", "output", "cache_creation", "cache_read"))


def totals(usage_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The totals row of `usage_rows` (sessions counted once per row, so a session in two
    rows counts twice: it is a sum of the column, as the table shows)."""
    total: dict[str, Any] = {"key": "total", "sessions": sum(r["sessions"] for r in usage_rows)}
    for f in FIELDS:
        total[f] = sum(r[f] for r in usage_rows)
    costs = [r["cost_usd"] for r in usage_rows]
    total["cost_usd"] = None if any(c is None for c in costs) else round(sum(costs), 6)
    return total


# -- 5-hour billing blocks ------------------------------------------------------------


def blocks(slots: Iterable[Sequence[Any]], book: PriceBook, now: float,
           block_hours: int = BLOCK_HOURS) -> list[dict[str, Any]]:
    """Billing blocks from Tier2.usage_by_slot rows (time order), as ccusage draws them: a
    block starts at the hour of its first response (the hour its slot is in); a response
    more than `block_hours` after the block's start, or after the response before it,
    starts a new block (and a gap of more than `block_hours` between responses is shown
    as a gap). The block whose
    window holds `now` and whose last response is within `block_hours` of it is active."""
    span = block_hours * 3600
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for slot, model, prompt_over, first_at, last_at, *counts in slots:
        first = first_at if first_at is not None else slot * float(SLOT_SECONDS)
        last = last_at if last_at is not None else first
        if current is not None and (first - current["_start"] > span
                                    or first - current["_last"] > span):
            out.append(_close(current, now, span))
            if first - current["_last"] > span:
                out.append(_gap(current["_last"] + span, first))
            current = None
        if current is None:
            current = {"_start": slot // SLOTS_PER_HOUR * 3600.0, "_last": last,
                       "_sum": _Sum(), "_models": {}}
        current["_last"] = max(current["_last"], last)
        current["_sum"].add(model, counts, book.price(model, prompt_over))
        current["_models"].setdefault(model)
    if current is not None:
        out.append(_close(current, now, span))
    return out


def _iso(ts: float) -> str:
    """UTC with milliseconds, as the tools (and ccusage's block ids) write times."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _close(block: dict[str, Any], now: float, span: int) -> dict[str, Any]:
    start, last = block["_start"], block["_last"]
    return {"id": _iso(start), "start": _iso(start), "end": _iso(start + span),
            "last_activity": _iso(last), "active": now - last < span and now < start + span,
            "gap": False, "models": list(block["_models"]), **block["_sum"].as_row()}


def _gap(start: float, end: float) -> dict[str, Any]:
    return {"id": "gap-" + _iso(start), "start": _iso(start), "end": _iso(end),
            "last_activity": None, "active": False, "gap": True, "models": [],
            **dict.fromkeys(FIELDS, 0), "cost_usd": 0.0, "responses": 0, "prices": {}}


# -- per session ----------------------------------------------------------------------


def by_session(groups: Iterable[Sequence[Any]], book: PriceBook) -> dict[str, dict[str, Any]]:
    """Session id -> {"tokens": {FIELDS}, "cost_usd"} from Tier2.usage_by_session."""
    sums: dict[str, _Sum] = {}
    for sid, model, prompt_over, *counts in groups:
        sums.setdefault(sid, _Sum()).add(model, [*counts, 0], book.price(model, prompt_over))
    out = {}
    for sid, s in sums.items():
        row = s.as_row()
        out[sid] = {"tokens": {f: row[f] for f in FIELDS}, "cost_usd": row["cost_usd"]}
    return out


# -- dates ----------------------------------------------------------------------------


def _utc_offset(slot: int) -> int:
    return time.localtime(slot * SLOT_SECONDS).tm_gmtoff


_SLOTS_A_DAY = 86400 // SLOT_SECONDS


def local_offsets(first_slot: int | None, last_slot: int | None) -> list[tuple[int, int]]:
    """The local time's UTC offset (seconds) from each slot on, over [first_slot,
    last_slot]: one entry, plus one per daylight-saving change in between."""
    if first_slot is None or last_slot is None:
        return [(0, _utc_offset(int(time.time() // SLOT_SECONDS)))]
    out = [(first_slot, _utc_offset(first_slot))]
    slot = first_slot
    while slot < last_slot:
        step = min(slot + _SLOTS_A_DAY, last_slot)
        if _utc_offset(step) != out[-1][1]:
            lo, hi = slot, step  # the change is after lo, at or before hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _utc_offset(mid) == out[-1][1] else (lo, mid)
            out.append((hi, _utc_offset(hi)))
        slot = step
    return out


def parse_when(value: str | float | None, *, end_of_day: bool = False,
               now: float | None = None) -> float | None:
    """A --since/--until value as epoch seconds: a date (YYYY-MM-DD or YYYYMMDD, local
    time; with `end_of_day` the end of that day, so --until is inclusive), an ISO 8601
    time, an age such as 7d or 12h, or epoch seconds. ValueError for anything else."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    text = value.strip()
    day = _as_date(text)
    if day is not None:
        if end_of_day:
            day += timedelta(days=1)
        return time.mktime(day.timetuple())
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from session_memory import config
        from session_memory.errors import ConfigError

        try:
            age = config.parse_duration(text, "age")
        except ConfigError:
            raise ValueError(f"{value!r}: expected a date (2025-01-31), a time "
                             "(2025-01-31T09:00) or an age (7d)") from None
        return (now if now is not None else time.time()) - age
    return when.timestamp() if when.tzinfo else time.mktime(when.timetuple())


def _as_date(text: str) -> date | None:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None
