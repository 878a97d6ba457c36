"""Sizes and times as people read them, for the terminal and the dashboard alike."""

from __future__ import annotations

import re
from datetime import datetime


def human_bytes(n: int | float | None, missing: str = "-") -> str:
    if n is None:
        return missing
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def human_count(n: int, noun: str) -> str:
    """`1 session`, `2 sessions`: `noun` is a regular one (plural with an s)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def human_cost(usd: float | None, missing: str = "-") -> str:
    return missing if usd is None else f"${usd:,.2f}"


def human_time(ts: float | None, missing: str = "-", *, zone: bool = False) -> str:
    """Local time to the minute; with `zone`, its abbreviation too (a page may be read in
    another time zone than the one it was written in)."""
    if ts is None:
        return missing
    when = datetime.fromtimestamp(ts).astimezone()
    return when.strftime("%Y-%m-%d %H:%M %Z" if zone else "%Y-%m-%d %H:%M")


def human_duration(seconds: float | None, missing: str = "-") -> str:
    """`45 s`, `12 min`, `1 h 44 min`, `3 d 2 h`: to the unit below the largest."""
    if seconds is None:
        return missing
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if hours == 0:
        return f"{minutes} min"
    if days == 0:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text a session holds (a title, a prompt, a command, a file's name) as a terminal
    should get it: each control character but tab and line feed as `\\xNN`. Sent as
    it is, an escape sequence in a transcript retitled the window, could write the
    clipboard, or hid what came after it."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
