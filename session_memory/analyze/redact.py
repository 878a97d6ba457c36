"""Secrets out of everything written to Tier 2. Raw Tier 1 bytes stay exact.

Each pattern names its kind; a match becomes `[REDACTED:<kind>]`. The patterns follow
the published token formats (prefixes and lengths), so ordinary code does not match:
`*_TOKEN=`/`*_KEY=` assignments only when the value looks like a secret (long, or
letters and digits mixed), never a variable reference or a short word.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)", re.DOTALL)),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b")),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    ("slack_token", re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}")),
    ("slack_webhook", re.compile(
        r"https://hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
]
# scheme://user:password@host — the password goes, the rest stays readable.
_URL_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\[\]]+:)([^/\s@\[\]]+)(@)")
# NAME_TOKEN=value, NAME_KEY: "value", export API_SECRET='value' …
_ASSIGNMENT = re.compile(
    r"\b([A-Z][A-Z0-9_]*_(?:TOKEN|KEY|SECRET|PASSWORD|PASSWD))([\"']?\s*[=:]\s*[\"']?)"
    r"([A-Za-z0-9_\-./+=~]{8,})")
_LOOKS_SECRET = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])|.{20,}")
# Every pattern above matches only where one of these does; text without them is clean.
# Made of characters JSON never escapes, so it also holds on a value's JSON encoding.
_HINT = r"-----BEGIN|A[KS]IA|ABIA|ACCA|gh[pousr]_|github_pat_|sk-|xox|eyJ|://|_(?:TOKEN|KEY|SECRET|PASSW)"
_HINT_TEXT = re.compile(_HINT)
_HINT_JSON = re.compile(_HINT.encode())


def redact(text: str) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]`."""
    if not _HINT_TEXT.search(text):
        return text
    for kind, pattern in _PATTERNS:
        text = pattern.sub(f"[REDACTED:{kind}]", text)
    text = _URL_PASSWORD.sub(r"\1[REDACTED:url_password]\3", text)
    return _ASSIGNMENT.sub(_assignment, text)


def _assignment(m: re.Match[str]) -> str:
    value = m.group(3)
    if value.startswith("$") or not _LOOKS_SECRET.match(value):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}[REDACTED:assignment]"


def redact_all(value: Any) -> Any:
    """A JSON-like value with every string (keys too) redacted: `value` itself when it
    holds no secret (one scan of its encoding decides), else a redacted copy."""
    if not _HINT_JSON.search(msgspec.json.encode(value)):
        return value
    return _redact_each(value)


def _redact_each(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: _redact_each(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_each(v) for v in value]
    return value
