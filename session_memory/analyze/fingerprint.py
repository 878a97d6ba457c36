"""Error snippets and their fingerprints: the same failure in two sessions reads as one."""

from __future__ import annotations

import re

SNIPPET_CHARS = 300
FINGERPRINT_CHARS = 160
_SCAN_CHARS = 20_000
_WRAPPER_TAGS = re.compile(r"</?(?:tool_use_error|error)>")
_EXCEPTION_LINE = re.compile(r"^[ \t]*[\w.]*(?:Error|Exception)\b:?.*$", re.MULTILINE)
_ERROR_LINE = re.compile(r"error|exception|failed|fatal|traceback|denied|not found",
                         re.IGNORECASE)
# Order matters: paths and ids first, so their digits do not become numbers.
_FOLDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+"), "<url>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:~|\.{1,2})?(?:[\\/][\w.@+-]+)+[\\/]?|"
                r"\b[\w.@+-]+(?:[\\/][\w.@+-]+)+"), "<path>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
     "<hex>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b"),
     "<hex>"),
    (re.compile(r"(?<![\w.])\d+(?:[.:,]\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def snippet(text: str) -> str:
    """The telling part of an error: a traceback's exception line, else the text from its
    first line that names a failure; whitespace collapsed, at most SNIPPET_CHARS."""
    text = _WRAPPER_TAGS.sub("", text[:_SCAN_CHARS]).strip()
    if "Traceback" in text:
        # A Python traceback ends with the exception: that line is what failed.
        raised = _EXCEPTION_LINE.findall(text)
        if raised:
            return " ".join(raised[-1].split())[:SNIPPET_CHARS]
    m = _ERROR_LINE.search(text)
    if m:
        text = text[text.rfind("\n", 0, m.start()) + 1:]
    return " ".join(text.split())[:SNIPPET_CHARS]


def fingerprint(snippet_text: str) -> str:
    """The snippet with paths, urls, hex ids and numbers folded to placeholders."""
    text = snippet_text
    for pattern, placeholder in _FOLDS:
        text = pattern.sub(placeholder, text)
    return text.strip()[:FINGERPRINT_CHARS]
