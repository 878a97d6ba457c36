"""The page in a real headless browser (Debian's chromium driven by Playwright): it loads
with no console error and no network request, draws every chart, shows the reports and the
lost sessions, and opens a sweep's report when its dot is clicked."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.dashboard.store import SweptStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


# A chart's size and what it drew: the data marks (not axes or legends) Vega put in its SVG.
_DRAWN = """(el) => {
  const svg = el.querySelector('svg');
  if (!svg) return {width: 0, height: 0, marks: 0};
  const rect = svg.getBoundingClientRect();
  const marks = Array.from(svg.querySelectorAll('g.role-mark > path, g.role-mark > g'))
    .filter((m) => { const r = m.getBoundingClientRect(); return r.width > 0 || r.height > 0; });
  return {width: rect.width, height: rect.height, marks: marks.length};
}"""

# The centre, on the page, of the bar the evictions chart drew for a pass of report `rid`.
_BAR = """([rid, pass]) => {
  for (const el of document.querySelectorAll('#chart-evictions g.role-mark path')) {
    const item = el.__data__;
    if (item && item.datum && item.datum.id === rid && item.datum.pass === pass) {
      const r = el.getBoundingClientRect();
      return {x: r.left + r.width / 2, y: r.top + r.height / 2};
    }
  }
  return null;
}"""

# The centre, on the page, of the dot the tier 1 chart drew for report `rid` (Vega keeps each
# SVG element's scenegraph item, with its data row, on the element).
_DOT = """(rid) => {
  for (const el of document.querySelectorAll('#chart-tier1 g.role-mark path')) {
    const item = el.__data__;
    if (item && item.mark.marktype === 'symbol' && item.datum && item.datum.id === rid) {
      const r = el.getBoundingClientRect();
      return {x: r.left + r.width / 2, y: r.top + r.height / 2};
    }
  }
  return null;
}"""


def _open(browser: BrowserContext, uri: str) -> tuple[Page, list[str], list[str]]:
    """A tab with the page at `uri` loaded and drawn, and what it logged and requested."""
    tab = browser.new_page()
    console: list[str] = []
    requests: list[str] = []
    tab.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(uri)
    tab.evaluate("() => window.dashboard.ready")
    print("console:", console, "requests:", requests)
    return tab, console, requests


def _wait_for_report(tab: Page, rid: str) -> None:
    """Until the report panel shows report `rid`."""
    tab.wait_for_function("(rid) => document.getElementById('report-detail-id').textContent"
                          " === rid", arg=rid)


def test_page_in_a_real_browser(browser: BrowserContext, page: Path, swept: SweptStore,
                                tmp_path: Path) -> None:
    tab, console, requests = _open(browser, page.as_uri())
    assert not [m for m in console if m.startswith(("error", "pageerror", "warning"))]
    assert requests == [page.as_uri()]  # the page itself, nothing else

    charts = tab.eval_on_selector_all("[data-chart]", "els => els.map(e => e.dataset.chart)")
    assert {"tier1", "evictions", "states", "tiers", "largest", "projects", "sources",
            "tokens", "cost"} == set(charts)
    for name in charts:
        drawn: dict[str, Any] = tab.eval_on_selector(f"[data-chart={name}]", _DRAWN)
        print(name, drawn)
        assert drawn["width"] > 0 and drawn["height"] > 0, name
        assert drawn["marks"] > 0, f"{name} drew nothing"

    text = tab.inner_text("body")
    for report in swept.reports:
        assert report["id"] in text
    assert swept.data_loss
    for sid in swept.data_loss:
        assert sid in text

    # Click the data-loss sweep's dot: its report opens, listing the lost sessions.
    lossy = swept.reports[-1]["id"]
    dot = tab.evaluate(_DOT, lossy)
    assert dot, "the data-loss sweep has no dot on the tier 1 chart"
    assert tab.is_hidden("#report-detail")
    tab.mouse.click(dot["x"], dot["y"])
    tab.wait_for_selector("#report-detail", state="visible")
    assert tab.inner_text("#report-detail-id") == lossy
    detail = tab.inner_text("#report-detail")
    for sid in swept.data_loss:
        assert f"DATA LOSS: {sid}" in detail

    # A sweep that evicted without loss has its dot under the usage line: a click reaches it.
    budget = next(r for r in swept.reports if r["budget_evicted"] and not r["dry_run"])
    tab.mouse.click(**tab.evaluate(_DOT, budget["id"]))
    _wait_for_report(tab, budget["id"])
    tab.mouse.click(**tab.evaluate(_DOT, lossy))  # where it is now: the page has scrolled
    _wait_for_report(tab, lossy)

    # The budget sweep's bar in the evictions chart opens that report too.
    bar = tab.evaluate(_BAR, [budget["id"], "budget"])
    assert bar, "the budget sweep has no bar"
    tab.mouse.click(bar["x"], bar["y"])
    _wait_for_report(tab, budget["id"])
    detail = tab.inner_text("#report-detail")
    for sid in budget["budget_evicted"]:
        assert f"budget: {sid}" in detail
    assert "DATA LOSS" not in detail

    shot = tmp_path / "dashboard.png"
    tab.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert not [m for m in console if m.startswith(("error", "pageerror"))]
    assert requests == [page.as_uri()]


def test_tables_read_without_javascript(tmp_path: Path, page: Path, swept: SweptStore) -> None:
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "nojs-profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS, java_script_enabled=False)
        try:
            tab = context.new_page()
            tab.goto(page.as_uri())
            text = tab.inner_text("body")
            assert "JavaScript is off" in text
            for report in swept.reports:
                assert report["id"] in text
            for sid in swept.data_loss:
                assert sid in text
            assert tab.query_selector("svg") is None
        finally:
            context.close()


def test_an_empty_store_draws_what_it_has(browser: BrowserContext, home: Path,
                                          tmp_path: Path) -> None:
    """A fresh install: no sweep, no session, no usage. The page says so and fails nowhere."""
    from session_memory import dashboard
    from session_memory.memory import Memory
    from tests.dashboard.store import settings_for

    settings, _ = settings_for(home)
    out = tmp_path / "empty.html"
    with Memory(settings) as memory:
        dashboard.write(memory, out)
    tab, console, requests = _open(browser, out.as_uri())
    assert console == [] and requests == [out.as_uri()]
    charts = tab.eval_on_selector_all("[data-chart]", "els => els.map(e => e.dataset.chart)")
    assert set(charts) == {"states", "tiers"}
    text = tab.inner_text("body")
    assert "No sweep has run yet." in text and "Tier 1 holds no session." in text
    assert "No usage recorded yet" in text


# The tier 1 chart's x axis labels, and the data marks it drew with a size on the page.
_TIER1_AXIS_AND_MARKS = """() => {
  const svg = document.querySelector('#chart-tier1 svg');
  const labels = Array.from(svg.querySelectorAll('g.role-axis-label text'))
    .map((t) => t.textContent);
  const marks = Array.from(svg.querySelectorAll('g.role-mark path'))
    .filter((m) => m.__data__ && m.__data__.mark && !m.__data__.mark.role.startsWith('axis')
            && !m.__data__.mark.role.startsWith('legend'))
    .filter((m) => { const r = m.getBoundingClientRect(); return r.width > 0 && r.height > 0; });
  return {labels: labels, marks: marks.length};
}"""


def test_a_first_sweep_is_drawn_on_the_tier1_chart(browser: BrowserContext, home: Path,
                                                    tmp_path: Path) -> None:
    """One sweep that evicted nothing (a new install's first): its usage and the caps show as
    points on an axis of readable times, not an empty chart under a sub-second tick."""
    from session_memory import dashboard
    from session_memory.clock import FixedClock
    from session_memory.memory import Memory
    from tests.dashboard.store import START, settings_for

    settings, _ = settings_for(home)
    out = tmp_path / "first-sweep.html"
    with Memory(settings, clock=FixedClock(START + 0.89)) as memory:
        memory.ingest()
        memory.sweep()
        dashboard.write(memory, out)
    tab, console, _requests = _open(browser, out.as_uri())
    assert not [m for m in console if m.startswith(("error", "pageerror"))]
    drawn = tab.evaluate(_TIER1_AXIS_AND_MARKS)
    print(drawn)
    # Before and after the sweep, soft, effective and hard cap: a point each.
    assert drawn["marks"] >= 5
    xlabels = [label for label in drawn["labels"] if not label.replace(".", "").isdigit()]
    assert xlabels, drawn["labels"]
    assert not [label for label in drawn["labels"] if label.startswith(".")], drawn["labels"]


# The evictions chart's x axis labels.
_EVICTIONS_AXIS = """() => Array.from(document.querySelectorAll(
    '#chart-evictions svg g.role-axis-label text')).map((t) => t.textContent)"""


def test_a_first_sweep_that_evicts_is_drawn_on_an_axis_of_times(browser: BrowserContext,
                                                                 home: Path,
                                                                 tmp_path: Path) -> None:
    """A new install over an old history: its first sweep evicts by age at once. The
    evictions chart marks that one sweep on an axis of readable times, as the tier 1 chart
    does, not under a lone sub-second tick (".890")."""
    from session_memory import dashboard
    from session_memory.clock import FixedClock
    from session_memory.memory import Memory
    from tests.dashboard.store import START, settings_for
    from tests.test_retention import set_caps

    settings, _ = settings_for(home)
    out = tmp_path / "first-sweep-evicts.html"
    with Memory(settings, clock=FixedClock(START + 0.89)) as memory:
        memory.ingest()
        memory.analyze([s["id"] for s in memory.sessions()])
        set_caps(memory, raw_max_age_days=1.0)
        assert memory.sweep()["backstop_evicted"]
        dashboard.write(memory, out)
    tab, console, _requests = _open(browser, out.as_uri())
    assert not [m for m in console if m.startswith(("error", "pageerror"))]
    labels = tab.evaluate(_EVICTIONS_AXIS)
    assert [label for label in labels if not label.replace(".", "").isdigit()], labels
    assert not [label for label in labels if label.startswith(".")], labels


def test_the_page_fits_a_laptop_screen(browser: BrowserContext, page: Path) -> None:
    """No table runs past a 1024-pixel window: a long title is cut with an ellipsis, a long
    path or id breaks (a cell's own max-width does not hold a table column)."""
    tab, _console, _requests = _open(browser, page.as_uri())
    tab.set_viewport_size({"width": 1024, "height": 800})
    # The charts drawn at the first window's width are drawn again at the new one when the
    # browser gets to it: on a busy machine, after this line. Until then (or, never fitting,
    # a while), then the checks.
    with contextlib.suppress(PlaywrightTimeoutError):
        tab.wait_for_function("() => document.documentElement.scrollWidth <= 1024",
                              timeout=20_000)
    overflow = tab.evaluate("""() => Array.from(document.querySelectorAll('table'))
        .map((t) => [t.closest('section').id, t.getBoundingClientRect().right,
                     t.parentElement.getBoundingClientRect().right])
        .filter(([, right, room]) => right > room + 1)""")
    assert overflow == []
    assert tab.evaluate("document.documentElement.scrollWidth") <= 1024
