"""Log lines: JSON objects on stderr (journald's priority prefix under systemd), ours and the
standard library's alike; structlog's console lines on a terminal. Each case runs in a
fresh interpreter, as a command or the daemon does, so the set-up on first use is real."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import OUTSIDE_VARS

SCRIPT = """
import logging, sys
from session_memory import log
logger = log.get("session_memory.example")
logger.info("stored", path="/p/s.jsonl", files=2, odd=object())
logger.debug("not shown at info")
try:
    1 / 0
except ZeroDivisionError:
    logger.exception("job failed", job="sweep")
logging.getLogger("watchdog.observers").warning("foreign %s", "record")
logging.getLogger("watchdog.observers").info("below watchdog's level")
print("structlog" in sys.modules, file=sys.stdout)
"""


def run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARS}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=clean | env, timeout=120, check=True)


def test_json_lines_carry_the_keys_event_level_logger_and_time() -> None:
    done = run(SCRIPT)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    stored, failed, foreign = lines
    assert list(stored) == ["path", "files", "odd", "event", "level", "logger", "timestamp"]
    assert stored["event"] == "stored" and stored["files"] == 2 and stored["level"] == "info"
    assert stored["logger"] == "session_memory.example" and stored["odd"].startswith("<object")
    assert stored["timestamp"].endswith("Z")
    assert failed["level"] == "error" and failed["job"] == "sweep"
    assert "ZeroDivisionError: division by zero" in failed["exception"]
    assert foreign == {"event": "foreign record", "level": "warning",
                       "logger": "watchdog.observers", "timestamp": foreign["timestamp"]}
    assert done.stdout.strip() == "True"  # structlog renders it


def test_a_line_below_the_level_loads_no_structlog() -> None:
    """A one-shot command whose only lines are below the level (debug, at info) starts
    without structlog (50 ms or more of imports)."""
    done = run('import sys\nfrom session_memory import log\n'
               'log.get("session_memory.example").debug("quiet", n=1)\n'
               'print("structlog" in sys.modules)')
    assert done.stderr == "" and done.stdout.strip() == "False"
    done = run('import sys\nfrom session_memory import log\n'
               'log.get("session_memory.example").debug("shown", n=1)\n'
               'print("structlog" in sys.modules)', SESSION_MEMORY_LOG_LEVEL="debug")
    assert json.loads(done.stderr)["event"] == "shown" and done.stdout.strip() == "True"


def test_under_systemd_each_line_has_its_journald_priority() -> None:
    done = run(SCRIPT, INVOCATION_ID="0123")
    prefixes = [line[:3] for line in done.stderr.splitlines()]
    assert prefixes == ["<6>", "<3>", "<4>"]
    assert json.loads(done.stderr.splitlines()[0][3:])["event"] == "stored"


def test_the_level_comes_from_the_environment() -> None:
    done = run(SCRIPT, SESSION_MEMORY_LOG_LEVEL="debug")
    assert "not shown at info" in done.stderr


def test_a_terminal_gets_structlogs_console_lines() -> None:
    done = run("from session_memory import log\nlog.setup(force_json=False)\n" + SCRIPT)
    assert "stored" in done.stderr and "files" in done.stderr and "/p/s.jsonl" in done.stderr
    assert "foreign record" in done.stderr and "ZeroDivisionError" in done.stderr
    assert not done.stderr.lstrip().startswith("{")
    assert done.stdout.strip() == "True"


def test_a_terminal_gets_what_a_value_holds_as_text() -> None:
    """A session id may be a file's name, escape sequences and all: on a terminal they are
    shown, not sent; JSON escapes them itself."""
    script = ('from session_memory import log\nlog.setup(force_json={})\n'
              'log.get("session_memory.example").info("new session", '
              'session="mytool:\\x1b]0;pwned\\x07.jsonl")')
    console = run(script.format(False)).stderr
    assert "\x1b]" not in console and "mytool:\\x1b]0;pwned\\x07.jsonl" in console
    assert json.loads(run(script.format(True)).stderr)["session"] == "mytool:\x1b]0;pwned\x07.jsonl"
