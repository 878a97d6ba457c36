"""The page: one HTML file with its tables, styles, scripts and data inline. The tables are
plain HTML (readable without JavaScript); the charts are drawn on top of them by the inlined
Vega-Lite from a gzip-compressed, base64-encoded JSON document in the page."""

from __future__ import annotations

import base64
import gzip
import json
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from session_memory import __version__
from session_memory.dashboard import charts
from session_memory.dashboard.gather import PASSES, RECENT_REPORTS
from session_memory.humanize import human_bytes, human_time

_PACKAGE = resources.files("session_memory.dashboard")
VENDORED_JS = ("vendor/vega.min.js", "vendor/vega-lite.min.js")
LARGEST_CHART_ROWS = 20  # sessions drawn in the "largest" chart (the table lists more)
# Sweeps closer together than this draw no line to read (one sweep draws none at all, under
# an axis of milliseconds): the tier 1 chart then spans this much either side of them.
SHORT_SWEEP_SPAN_S = 3600.0


def render(data: dict[str, Any]) -> str:
    """The whole page for `data` (from gather.gather)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(bytes=lambda n: human_bytes(n, "–"),
                       when=lambda ts: human_time(ts, "–", zone=True), num=lambda n: f"{n:,}")
    template = env.from_string(_read("template.html"))
    return template.render(
        d=data, version=__version__, passes=PASS_LABELS, recent_reports=RECENT_REPORTS,
        style=Markup(_read("page.css")),
        scripts=[Markup(_script_text(_read(p))) for p in VENDORED_JS]
        + [Markup(_script_text(_read("page.js")))],
        payload=_payload(data))


PASS_LABELS = {"backstop": "backstop", "budget": "budget", "overflow": "DATA LOSS",
               None: "unattributed"}


def _read(name: str) -> str:
    return (_PACKAGE / name).read_text(encoding="utf-8")


def _script_text(text: str) -> str:
    """Script text that cannot end its own <script> element early."""
    return text.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _payload(data: dict[str, Any]) -> str:
    """What the charts draw, and each report's sessions for a click, as base64 of gzip of JSON:
    a year of sweeps is repetitive enough that this is a third of its plain size."""
    doc = {"specs": _specs(data), "datasets": _datasets(data), "sweeps": data["sweeps"],
           "details": data["details"], "by_model": data["spend"]["by_model"]}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def _specs(data: dict[str, Any]) -> dict[str, Any]:
    sweeps, now = data["sweeps"], data["now"]
    peaks = [v for col in ("before", "after", "soft", "effective") for v in sweeps[col]
             if v is not None]
    freed = [sum(v or 0 for v in vals)
             for vals in zip(*(sweeps[f"freed_{p}"] for p in PASSES), strict=True)]
    t1 = now["tier1"]
    tier_max = max(t1["usage_bytes"], t1["hard_cap_bytes"], now["tier2"]["usage_bytes"],
                   now["tier2"]["cap_bytes"])
    short_span = _short_time_domain_ms(sweeps["t"])
    specs = {
        "tier1": charts.tier1(max(peaks, default=t1["soft_cap_bytes"]), short_span),
        "evictions": charts.evictions(max(freed, default=0), short_span),
        "states": charts.states(),
        "tiers": charts.tiers(tier_max),
        "largest": charts.largest(max((s["stored_bytes"] for s in data["largest"]), default=0),
                                  min(len(data["largest"]), LARGEST_CHART_ROWS)),
        "projects": charts.ranked_bars("by_project", "key", "stored",
                                       max((r["stored_bytes"] for r in data["by_project"]),
                                           default=0), len(data["by_project"])),
        "sources": charts.ranked_bars("by_source", "key", "stored",
                                      max((r["stored_bytes"] for r in data["by_source"]),
                                          default=0), len(data["by_source"])),
        "tokens": charts.spend("tokens", "tokens", data["spend"]["by_model"]),
    }
    if data["spend"]["has_cost"]:
        specs["cost"] = charts.spend("cost_usd", "cost (USD)", data["spend"]["by_model"])
    # A chart with nothing to draw is left out: its table says why it is empty.
    empty = {"tier1": not sweeps["id"],
             "evictions": not any(any(sweeps[f"n_{p}"]) for p in PASSES),
             "largest": not data["largest"], "projects": not data["by_project"],
             "sources": not data["by_source"], "tokens": not data["spend"]["rows"]}
    return {name: spec for name, spec in specs.items() if not empty.get(name)}


def _short_time_domain_ms(times: list[float | None]) -> tuple[float, float] | None:
    """The time axis (ms) of the sweeps' charts where they span less than SHORT_SWEEP_SPAN_S."""
    known = [t for t in times if t is not None]
    if not known or max(known) - min(known) >= SHORT_SWEEP_SPAN_S:
        return None
    return ((min(known) - SHORT_SWEEP_SPAN_S) * 1000, (max(known) + SHORT_SWEEP_SPAN_S) * 1000)


def _datasets(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    now = data["now"]
    t1, t2 = now["tier1"], now["tier2"]
    return {
        "states": [{"state": s, "count": now["sessions"].get(s, 0)} for s in charts.STATE_COLOURS],
        "tier_usage": [{"tier": "Tier 1", "bytes": t1["usage_bytes"]},
                       {"tier": "Tier 2", "bytes": t2["usage_bytes"]}],
        "tier_caps": [{"tier": "Tier 1", "cap": "soft cap", "bytes": t1["soft_cap_bytes"]},
                      {"tier": "Tier 1", "cap": "effective cap (keep_free)",
                       "bytes": t1["effective_cap_bytes"]},
                      {"tier": "Tier 1", "cap": "hard cap", "bytes": t1["hard_cap_bytes"]},
                      {"tier": "Tier 2", "cap": "distilled cap", "bytes": t2["cap_bytes"]}],
        "largest": data["largest"][:LARGEST_CHART_ROWS],
        "by_project": data["by_project"],
        "by_source": data["by_source"],
        "spend": data["spend"]["rows"],
    }
