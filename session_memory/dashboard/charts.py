"""The charts, as Vega-Lite specifications: what to draw from which fields. Vega-Lite (inlined
in the page) does all the geometry: scales, axes, stacking, layout."""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier, never fetched
UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
DATA_LOSS = "#d62728"
PASS_COLOURS = {"backstop": "#4c78a8", "budget": "#f58518", "overflow (data loss)": DATA_LOSS}
STATE_COLOURS = {"active": "#54a24b", "ended": "#eeca3b", "analyzed": "#4c78a8",
                 "evicted": "#9d9d9d"}
TIER1_SERIES = {"Tier 1 before sweep": "#9ecae9", "Tier 1 after sweep": "#1f5f99",
                "soft cap": "#f58518", "effective cap (keep_free)": "#b279a2",
                "hard cap": "#000000", "sweep that evicted": "#72b7b2",
                "sweep with data loss": DATA_LOSS}
TIMESTAMP = "datum.t * 1000"


def unit_for(max_bytes: int | float | None) -> tuple[str, int]:
    """The binary unit that makes the largest value read as a small number."""
    for name, size in UNITS:
        if (max_bytes or 0) >= size:
            return name, size
    return "bytes", 1


def _colour(field: str, palette: dict[str, str], title: str | None = None) -> dict[str, Any]:
    return {"field": field, "type": "nominal", "title": title,
            "scale": {"domain": list(palette), "range": list(palette.values())},
            "legend": {"orient": "bottom", "columns": 4}}


def _base(height: int = 220) -> Spec:
    return {"$schema": SCHEMA, "width": "container", "height": height,
            "config": {"view": {"stroke": None}, "axis": {"labelFontSize": 11}}}


def tier1(max_bytes: int | None, time_domain_ms: tuple[float, float] | None = None) -> Spec:
    """Usage before and after each sweep against the three caps, sweeps that evicted marked.

    `time_domain_ms` is for sweeps too close together to make a line (a new install's first):
    the x axis then spans it, and each value is drawn as a point too."""
    unit, size = unit_for(max_bytes)
    y = {"field": "value", "type": "quantitative", "title": f"Tier 1 ({unit})"}
    x: dict[str, Any] = {"field": "time", "type": "temporal", "title": None}
    points: dict[str, Any] = {}
    if time_domain_ms is not None:
        x["scale"] = {"domain": list(time_domain_ms)}
        points = {"point": {"filled": True, "size": 40}}
    colour = _colour("series", TIER1_SERIES)
    scaled = {"calculate": f"datum.bytes / {size}", "as": "value"}
    return _base(280) | {
        "data": {"name": "sweeps"},
        "transform": [{"calculate": TIMESTAMP, "as": "time"}],
        "layer": [
            # Under the lines: a year of hourly sweeps makes these a band, not a cover. The
            # zoom lives here, so the lines above take no pointer events and a click reaches
            # the dot beneath them.
            _sweep_dots(x, y, colour, scaled, "datum.n_overflow == 0 && datum.n_backstop"
                        " + datum.n_budget > 0", "sweep that evicted", size=16, opacity=0.7)
            | {"params": [_ZOOM]},
            {"transform": [{"fold": ["before", "after"], "as": ["key", "bytes"]},
                           {"filter": "datum.bytes != null"}, scaled,
                           {"calculate": "datum.key == 'before' ? 'Tier 1 before sweep'"
                                         " : 'Tier 1 after sweep'", "as": "series"}],
             "mark": {"type": "line", "strokeWidth": 1.5, "interpolate": "linear"} | points,
             "encoding": {"x": x, "y": y, "color": colour}},
            {"transform": [{"fold": ["soft", "effective", "hard"], "as": ["key", "bytes"]},
                           {"filter": "datum.bytes != null"}, scaled,
                           {"calculate": "datum.key == 'soft' ? 'soft cap' : datum.key == 'hard'"
                                         " ? 'hard cap' : 'effective cap (keep_free)'",
                            "as": "series"}],
             "mark": {"type": "line", "interpolate": "step-after", "strokeDash": [5, 3],
                      "strokeWidth": 1.2} | points,
             "encoding": {"x": x, "y": y, "color": colour}},
            # Drawn last and larger: a year of sweeps must not hide the one that lost data.
            _sweep_dots(x, y, colour, scaled, "datum.n_overflow > 0", "sweep with data loss",
                        size=110, opacity=1.0),
        ],
    }


def _sweep_dots(x: dict[str, Any], y: dict[str, Any], colour: dict[str, Any],
                scaled: dict[str, Any], which: str, series: str, *, size: int,
                opacity: float) -> Spec:
    """A clickable dot at each sweep that `which` picks, at Tier 1's usage after it."""
    return {
        "transform": [{"filter": which},
                      {"calculate": "datum.after != null ? datum.after : datum.before",
                       "as": "bytes"},
                      {"filter": "datum.bytes != null"}, scaled,
                      {"calculate": f"'{series}'", "as": "series"},
                      {"calculate": "datum.freed_backstop + datum.freed_budget"
                                    " + datum.freed_overflow", "as": "freed"}],
        "mark": {"type": "point", "filled": True, "size": size, "opacity": opacity,
                 "cursor": "pointer"},
        "encoding": {"x": x, "y": y, "color": colour, "tooltip": _SWEEP_TOOLTIP},
    }


_ZOOM = {"name": "zoom", "select": {"type": "interval", "encodings": ["x"],
                                    "zoom": "wheel![event.shiftKey]"}, "bind": "scales"}
_SWEEP_TOOLTIP = [{"field": "id", "title": "report"},
                  {"field": "time", "type": "temporal", "format": "%c"},
                  {"field": "n_backstop", "title": "backstop"},
                  {"field": "n_budget", "title": "budget"},
                  {"field": "n_overflow", "title": "data loss"},
                  {"field": "freed", "title": "bytes freed", "format": ","}]


def evictions(max_freed: int | None, time_domain_ms: tuple[float, float] | None = None) -> Spec:
    """Bytes each sweep freed, stacked by pass; data loss in red. `time_domain_ms` as for
    `tier1`: a first sweep that evicted (a new install over an old history) is one instant."""
    unit, size = unit_for(max_freed)
    labels = ("datum.key == 'freed_backstop' ? 'backstop' : datum.key == 'freed_budget'"
              " ? 'budget' : 'overflow (data loss)'")
    count = ("datum.key == 'freed_backstop' ? datum.n_backstop : datum.key == 'freed_budget'"
             " ? datum.n_budget : datum.n_overflow")
    x: dict[str, Any] = {"field": "time", "type": "temporal", "title": None}
    if time_domain_ms is not None:
        x["scale"] = {"domain": list(time_domain_ms)}
    tooltip = [{"field": "id", "title": "report"},
               {"field": "time", "type": "temporal", "format": "%c"},
               {"field": "pass"}, {"field": "sessions"},
               {"field": "bytes", "title": "bytes freed", "format": ","}]
    return _base(220) | {
        "data": {"name": "sweeps"},
        "transform": [{"calculate": TIMESTAMP, "as": "time"},
                      {"fold": ["freed_backstop", "freed_budget", "freed_overflow"],
                       "as": ["key", "bytes"]},
                      {"calculate": count, "as": "sessions"},
                      {"filter": "datum.sessions > 0"},
                      {"calculate": labels, "as": "pass"},
                      {"calculate": f"(datum.bytes || 0) / {size}", "as": "value"}],
        "layer": [
            {"params": [_ZOOM],
             "mark": {"type": "bar", "width": 4, "cursor": "pointer"},
             "encoding": {"x": x, "y": {"field": "value", "type": "quantitative",
                                        "stack": "zero", "title": f"freed ({unit})"},
                          "color": _colour("pass", PASS_COLOURS, "pass"), "tooltip": tooltip}},
            # A full-height red line at each sweep that lost data: seen at any zoom.
            {"transform": [{"filter": "datum.pass == 'overflow (data loss)'"}],
             "mark": {"type": "rule", "color": DATA_LOSS, "strokeWidth": 2, "opacity": 0.8,
                      "cursor": "pointer"},
             "encoding": {"x": x, "tooltip": tooltip}},
        ],
    }


def states() -> Spec:
    return _base(120) | {
        "data": {"name": "states"},
        "mark": {"type": "bar"},
        "encoding": {
            "y": {"field": "state", "type": "nominal", "sort": list(STATE_COLOURS),
                  "title": None},
            "x": {"field": "count", "type": "quantitative", "title": "sessions"},
            "color": _colour("state", STATE_COLOURS) | {"legend": None},
            "tooltip": [{"field": "state"}, {"field": "count", "format": ","}]},
    }


def tiers(max_bytes: int | None) -> Spec:
    """Each tier's usage as a bar, its caps as ticks across it."""
    unit, size = unit_for(max_bytes)
    x = {"field": "value", "type": "quantitative", "title": unit}
    y = {"field": "tier", "type": "nominal", "title": None, "sort": None}
    caps = {"soft cap": "#f58518", "effective cap (keep_free)": "#b279a2", "hard cap": "#000000",
            "distilled cap": "#e45756"}
    return _base(110) | {
        "layer": [
            {"data": {"name": "tier_usage"},
             "transform": [{"calculate": f"datum.bytes / {size}", "as": "value"}],
             "mark": {"type": "bar", "color": "#4c78a8", "height": 18},
             "encoding": {"x": x, "y": y,
                          "tooltip": [{"field": "tier"}, {"field": "bytes", "format": ","}]}},
            {"data": {"name": "tier_caps"},
             "transform": [{"calculate": f"datum.bytes / {size}", "as": "value"}],
             "mark": {"type": "tick", "thickness": 3, "size": 30},
             "encoding": {"x": x, "y": y, "color": _colour("cap", caps),
                          "tooltip": [{"field": "cap"}, {"field": "bytes", "format": ","}]}},
        ],
    }


def ranked_bars(name: str, label: str, title: str, max_bytes: int | None, rows: int,
                colour: dict[str, Any] | None = None,
                tooltip: list[dict[str, Any]] | None = None) -> Spec:
    """Horizontal bars of stored bytes, largest on top."""
    unit, size = unit_for(max_bytes)
    encoding: dict[str, Any] = {
        "y": {"field": label, "type": "nominal", "title": None, "sort": "-x",
              "axis": {"labelLimit": 320}},
        "x": {"field": "value", "type": "quantitative", "title": f"{title} ({unit})"},
        "tooltip": tooltip or [{"field": label}, {"field": "stored_bytes", "format": ","},
                               {"field": "sessions", "format": ","}]}
    if colour is not None:
        encoding["color"] = colour
    return _base(18 * max(rows, 2)) | {  # a fixed height: its rows are known
        "data": {"name": name},
        "transform": [{"calculate": f"datum.stored_bytes / {size}", "as": "value"}],
        "mark": {"type": "bar", "color": "#4c78a8"},
        "encoding": encoding,
    }


def largest(max_bytes: int | None, rows: int) -> Spec:
    return ranked_bars(
        "largest", "id", "stored", max_bytes, rows,
        colour=_colour("state", STATE_COLOURS),
        tooltip=[{"field": "id", "title": "session"}, {"field": "project"},
                 {"field": "state"}, {"field": "age_days", "title": "age (days)",
                                      "format": ".1f"},
                 {"field": "stored_bytes", "format": ","}])


def spend(field: str, title: str, by_model: bool) -> Spec:
    """One value a day, stacked by model where the usage rows say which model spent it."""
    encoding: dict[str, Any] = {
        # A usage day is a calendar day already: read and shown as UTC so no offset moves it.
        "x": {"field": "day", "type": "temporal", "timeUnit": "utcyearmonthdate",
              "title": None},
        "y": {"field": field, "type": "quantitative", "aggregate": "sum", "title": title},
        "tooltip": [{"field": "day", "type": "temporal", "timeUnit": "utcyearmonthdate"},
                    {"field": field, "aggregate": "sum", "title": title,
                     "format": ",.2f" if field == "cost_usd" else ","}]}
    if by_model:
        encoding["color"] = {"field": "model", "type": "nominal", "title": "model",
                             "legend": {"orient": "bottom", "columns": 3}}
        encoding["tooltip"].insert(1, {"field": "model"})
    return _base(220) | {
        "data": {"name": "spend"},
        "transform": [{"filter": f"datum.{field} != null && datum.day != 'unknown'"}],
        "mark": {"type": "bar"},
        "encoding": encoding,
    }
