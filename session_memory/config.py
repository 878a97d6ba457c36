"""Settings: the default file merged under the user's, validated into typed values."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from session_memory import formats
from session_memory.errors import ConfigError

APP = "session-memory"

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MIN_INTERVAL_SECONDS = 1.0
"""The floor of every interval: at 0 the daemon would sweep or rescan in a tight loop."""


def parse_size(value: object, key: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(
            f"{key}: expected a size such as 4GiB or a number of bytes, got {value!r}")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ConfigError(
        f"{key}: expected a size such as 4GiB or a number of bytes, got {value!r}")


def parse_duration(value: object, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration such as 30m or seconds, got {value!r}")
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _DURATION_UNITS:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    raise ConfigError(f"{key}: expected a duration such as 30m or seconds, got {value!r}")


def parse_interval(value: object, key: str) -> float:
    """A duration that sets how often something repeats: at least MIN_INTERVAL_SECONDS."""
    seconds = parse_duration(value, key)
    if seconds < MIN_INTERVAL_SECONDS:
        raise ConfigError(f"{key}: an interval must be at least {MIN_INTERVAL_SECONDS:g}s, "
                          f"got {value!r}")
    return seconds


def _days(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: expected a number of days, got {value!r}")
    return float(value)


# Structs, not dataclasses: see store.tier1.Cursor.
class KeepFree(msgspec.Struct, frozen=True):
    """A free-space floor: absolute bytes, or a percentage of the filesystem."""

    bytes: int = 0
    percent: float | None = None

    def floor_bytes(self, total_bytes: int) -> int:
        if self.percent is not None:
            return int(total_bytes * self.percent / 100)
        return self.bytes


def parse_keep_free(value: object, key: str) -> KeepFree:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            pct = -1.0
        if not 0 <= pct < 100:
            raise ConfigError(f"{key}: expected a percentage between 0% and 100%, got {value!r}")
        return KeepFree(percent=pct)
    return KeepFree(bytes=parse_size(value, key))


class Source(msgspec.Struct, frozen=True):
    name: str
    format: str
    root: Path
    enabled: bool = True


class Retention(msgspec.Struct, frozen=True):
    raw_soft_cap: int
    raw_hard_cap: int
    raw_max_age_days: float
    distilled_cap: int
    keep_free: KeepFree
    sweep_interval: float
    report_max_age_days: float = 365.0


class Settings(msgspec.Struct, frozen=True):
    """The effective configuration (see `load`); msgspec.structs.replace makes a changed copy."""

    data_dir: Path
    retention: Retention
    idle_seconds: float
    rescan_interval: float
    sources: dict[str, Source] = msgspec.field(default_factory=dict)
    prices: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    """Model (or glob pattern) -> USD per million tokens, over the price table's."""
    raw: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def enabled_sources(self) -> list[Source]:
        return [s for s in self.sources.values() if s.enabled]


def default_config_text() -> str:
    # The packaged file beside this module, read as a plain file (importlib.resources would
    # cost every command 10 ms of start-up); as a resource only when imported from a zip.
    here = Path(__file__).parent
    beside = here / "default_config.toml"
    if beside.is_file():
        return beside.read_text(encoding="utf-8")
    if not here.is_dir():
        from importlib import resources

        return resources.files("session_memory").joinpath("default_config.toml").read_text(
            encoding="utf-8")
    # A source checkout (editable install): the documented file itself.
    return (Path(__file__).resolve().parent.parent / "config" / "config.toml").read_text("utf-8")


def user_config_path() -> Path:
    import platformdirs  # here: with --config and data_dir set, a command starts without it

    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin}: not valid TOML: {e}") from e


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_SCHEMA: dict[str, set[str]] = {
    "storage": {"data_dir"},
    "retention": {
        "raw_soft_cap", "raw_hard_cap", "raw_max_age_days", "distilled_cap",
        "keep_free", "sweep_interval", "report_max_age_days",
    },
    "ingest": {"idle_seconds", "rescan_interval"},
}
_SOURCE_KEYS = {"format", "root", "enabled"}


def _check_keys(doc: dict[str, Any]) -> None:
    for section, value in doc.items():
        if section == "sources":
            if not isinstance(value, dict):
                raise ConfigError("sources: expected tables like [sources.NAME]")
            for name, table in value.items():
                if not isinstance(table, dict):
                    raise ConfigError(f"sources.{name}: expected a table")
                for key in table:
                    if key not in _SOURCE_KEYS:
                        raise ConfigError(f"sources.{name}.{key}: unknown key")
            continue
        if section == "prices":
            continue  # checked by prices.check_overrides
        if section not in _SCHEMA:
            raise ConfigError(f"{section}: unknown key")
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a table")
        for key in value:
            if key not in _SCHEMA[section]:
                raise ConfigError(f"{section}.{key}: unknown key")


def _folder(value: str, key: str) -> Path:
    """`value` with `~` and `$VARS` expanded. It must then be absolute: a relative folder
    would be another one in each process's working directory (the daemon's is not your
    shell's), so the daemon and the commands would keep two stores."""
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.is_absolute():
        raise ConfigError(f"{key}: expected an absolute path or one starting with ~,"
                          f" got {value!r}")
    return path


def _source(name: str, table: dict[str, Any]) -> Source:
    fmt = table.get("format")
    if fmt not in formats.names():
        raise ConfigError(f"sources.{name}.format: expected one of "
                          f"{', '.join(formats.names())}, got {fmt!r}")
    root = table.get("root")
    # Unset, the root is where the tool itself writes (its environment variable honoured).
    default_root = formats.get(fmt).default_root() if root is None else None
    if default_root is None and (not isinstance(root, str) or not root):
        raise ConfigError(f"sources.{name}.root: expected a folder path, got {root!r}")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"sources.{name}.enabled: expected true or false, got {enabled!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"sources.{name}: a source name may hold only letters, digits, . _ -")
    return Source(name=name, format=fmt, enabled=enabled,
                  root=default_root if default_root is not None
                  else _folder(str(root), f"sources.{name}.root"))


def settings_from(doc: dict[str, Any]) -> Settings:
    _check_keys(doc)
    storage = doc.get("storage", {})
    ret = doc.get("retention", {})
    ing = doc.get("ingest", {})
    data_dir_value = storage.get("data_dir")
    if data_dir_value is None:
        data_dir = default_data_dir()
    elif isinstance(data_dir_value, str) and data_dir_value:
        data_dir = _folder(data_dir_value, "storage.data_dir")
    else:
        raise ConfigError(f"storage.data_dir: expected a folder path, got {data_dir_value!r}")
    retention = Retention(
        raw_soft_cap=parse_size(ret.get("raw_soft_cap"), "retention.raw_soft_cap"),
        raw_hard_cap=parse_size(ret.get("raw_hard_cap"), "retention.raw_hard_cap"),
        raw_max_age_days=_days(ret.get("raw_max_age_days"), "retention.raw_max_age_days"),
        distilled_cap=parse_size(ret.get("distilled_cap"), "retention.distilled_cap"),
        keep_free=parse_keep_free(ret.get("keep_free"), "retention.keep_free"),
        sweep_interval=parse_interval(ret.get("sweep_interval"), "retention.sweep_interval"),
        report_max_age_days=_days(ret.get("report_max_age_days"),
                                  "retention.report_max_age_days"),
    )
    if retention.raw_hard_cap < retention.raw_soft_cap:
        raise ConfigError("retention.raw_hard_cap: must not be below retention.raw_soft_cap")
    sources = {name: _source(name, table) for name, table in doc.get("sources", {}).items()}
    price_overrides = _price_overrides(doc.get("prices", {}))
    return Settings(
        data_dir=data_dir,
        retention=retention,
        idle_seconds=parse_duration(ing.get("idle_seconds"), "ingest.idle_seconds"),
        rescan_interval=parse_interval(ing.get("rescan_interval"), "ingest.rescan_interval"),
        sources=sources,
        prices=price_overrides,
        raw=doc,
    )


def _price_overrides(table: object) -> dict[str, dict[str, float]]:
    if table == {}:
        return {}  # as in most configs: the price table's code need not load (2 ms)
    from session_memory import prices

    try:
        return prices.check_overrides(table)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def default_document() -> dict[str, Any]:
    """The built-in defaults as a config document (a new copy each call): change what you
    need and pass it to `settings_from`, as the benchmarks do."""
    return _read_toml(default_config_text(), "default config")


def load(path: Path | None = None, *, defaults_only: bool = False) -> Settings:
    """The effective settings: defaults, then the user's file (if any) over them."""
    doc = default_document()
    if not defaults_only:
        explicit = path is not None
        path = path or user_config_path()
        if path.exists():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}: cannot read: {e}") from e
            doc = _merge(doc, _read_toml(text, str(path)))
        elif explicit:
            raise ConfigError(f"{path}: no such config file")
    return settings_from(doc)


def as_document(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, for `config show`."""
    r = settings.retention
    keep_free: str | int = f"{r.keep_free.percent:g}%" if r.keep_free.percent is not None \
        else r.keep_free.bytes
    return {
        "storage": {"data_dir": str(settings.data_dir)},
        "retention": {
            "raw_soft_cap": r.raw_soft_cap, "raw_hard_cap": r.raw_hard_cap,
            "raw_max_age_days": r.raw_max_age_days, "distilled_cap": r.distilled_cap,
            "keep_free": keep_free, "sweep_interval": r.sweep_interval,
            "report_max_age_days": r.report_max_age_days,
        },
        "ingest": {"idle_seconds": settings.idle_seconds,
                   "rescan_interval": settings.rescan_interval},
        "sources": {
            s.name: {"format": s.format, "root": str(s.root), "enabled": s.enabled}
            for s in settings.sources.values()
        },
        "prices": settings.prices,
    }
