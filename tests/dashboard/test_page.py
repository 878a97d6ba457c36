"""The page as a file: self-contained (nothing it would fetch), escaped, its data decodable."""

from __future__ import annotations

import base64
import gzip
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from session_memory.dashboard import page as page_mod
from session_memory.memory import Memory
from tests.dashboard.store import SweptStore

REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


class References(HTMLParser):
    """Every address the page's markup and styles would load: src, href, srcset, url()."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.tags: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "background") and value:
                self.found.append(f"{tag}[{name}]={value}")
            if name == "style" and value:
                self.found += _css_urls(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found += _css_urls(data)


def _css_urls(css: str) -> list[str]:
    return ([f"url({u})" for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", css)]
            + [f"@import {u}" for u in re.findall(r"@import\s+['\"]?([^'\";]+)", css)])


def payload(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/octet-stream" id="dashboard-data"'
                      r'[^>]*>([^<]*)</script>', html)
    assert found
    return dict(json.loads(gzip.decompress(base64.b64decode(found.group(1)))))


def test_no_remote_script_style_font_or_image(page: Path) -> None:
    html = page.read_text()
    refs = References()
    refs.feed(html)
    remote = [r for r in refs.found if REMOTE.search(r.split("=", 1)[-1].removeprefix("url(")
                                                      .removeprefix("@import "))]
    assert remote == []
    assert "link" not in refs.tags and "img" not in refs.tags and "iframe" not in refs.tags
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert "@font-face" not in html
    # The only hrefs are the page's own anchors.
    assert all(r.split("=", 1)[1].startswith("#") for r in refs.found if "[href]" in r)
    # And the page forbids loading anything even if a script tried.
    assert "default-src 'none'" in html


def test_payload_holds_every_chart_and_sweep(page: Path, swept: SweptStore) -> None:
    doc = payload(page.read_text())
    assert {"tier1", "evictions", "states", "tiers", "largest", "projects", "sources",
            "tokens"} <= set(doc["specs"])
    real = [r["id"] for r in swept.reports if not r["dry_run"]]
    assert doc["sweeps"]["id"] == real
    assert all(len(col) == len(real) for col in doc["sweeps"].values())
    for spec in doc["specs"].values():
        assert "url" not in json.dumps(spec.get("data", {}))  # data inline, never fetched


def test_the_sweeps_are_counted_in_words(home: Path, tmp_path: Path,
                                         swept_memory: Memory) -> None:
    """"1 sweep, at …" for a new install's first ("1 sweeps from … to …" was written);
    "N sweeps from … to …" for more."""
    from session_memory import dashboard
    from session_memory.clock import FixedClock
    from tests.dashboard.store import START, settings_for

    (home / "first").mkdir()
    settings, _ = settings_for(home / "first")
    with Memory(settings, clock=FixedClock(START)) as memory:
        memory.sweep()
        dashboard.write(memory, tmp_path / "first.html")
    first = " ".join((tmp_path / "first.html").read_text().split())
    assert "1 sweep, at " in first and "1 sweeps" not in first
    dashboard.write(swept_memory, tmp_path / "many.html")
    many = " ".join((tmp_path / "many.html").read_text().split())
    assert re.search(r"[2-9] sweeps from ", many), re.findall(r"\d+ sweeps? [^.]*", many)


def test_text_from_the_store_is_escaped(swept_memory: Memory, tmp_path: Path) -> None:
    report = swept_memory.reports(limit=1)[0]
    report["warnings"] = ["<script>alert('x')</script> & <b>bold</b>"]
    swept_memory.tier2.put_report(report)
    from session_memory import dashboard

    out = tmp_path / "d.html"
    dashboard.write(swept_memory, out)
    html = out.read_text()
    assert "<script>alert" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(" in html


def test_largest_sessions_are_listed_with_their_titles(swept_memory: Memory,
                                                       tmp_path: Path) -> None:
    from html import escape

    from session_memory import dashboard

    out = tmp_path / "d.html"
    dashboard.write(swept_memory, out)
    html = out.read_text()
    titled = sorted((s for s in swept_memory.sessions()
                     if s["title"] and s["stored_bytes"] and s["state"] != "evicted"),
                    key=lambda s: -s["stored_bytes"])
    assert titled
    for s in titled[:5]:  # among the largest, which the table lists
        assert (f'<td class="title" title="{escape(s["title"])}"><span>{escape(s["title"])}'
                f"</span></td>") in html


def test_vendored_library_ships_with_its_licences() -> None:
    vendor = Path(page_mod.__file__).parent / "vendor"
    for name in page_mod.VENDORED_JS:
        assert (vendor.parent / name).stat().st_size > 100_000
    for licence in ("LICENSE-vega", "LICENSE-vega-lite", "THIRD_PARTY_LICENSES.txt"):
        assert "Copyright" in (vendor / licence).read_text()
    versions = (vendor / "VERSIONS").read_text()
    assert "vega " in versions and "vega-lite " in versions
