"""The console script's exit (session_memory/__main__.py): as `sys.exit` would end the
process, without Python's tear-down."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _exit_with(code: str, before: str = "") -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from session_memory.__main__ import exit_now
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        {before}
        sys.stdout.write("unflushed")
        exit_now({code})
        print("not reached")
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("code", "status"), [("0", 0), ("None", 0), ("3", 3), ("130", 130)])
def test_the_exit_status_is_sys_exits_and_output_and_atexit_are_not_lost(
        code: str, status: int) -> None:
    run = _exit_with(code)
    assert run.returncode == status
    assert run.stdout == "unflushed"
    assert run.stderr == "atexit ran\n"


def test_a_message_is_printed_and_exits_1() -> None:
    run = _exit_with("'no such thing'")
    assert run.returncode == 1
    assert run.stderr == "no such thing\natexit ran\n"


def test_a_thread_still_running_is_waited_for() -> None:
    run = _exit_with("0", before="threading.Thread(target=lambda: (time.sleep(0.5), "
                                 "print('thread done', file=sys.stderr))).start()")
    assert run.returncode == 0
    assert run.stderr == "thread done\natexit ran\n"


def test_a_command_runs_with_garbage_collection_on() -> None:
    """The console script loads with the collector off, and turns it on for the command
    (a daemon runs for weeks)."""
    script = textwrap.dedent("""
        import atexit, gc, sys
        from session_memory.__main__ import main
        atexit.register(lambda: print("collecting:", gc.isenabled(), file=sys.stderr))
        sys.argv = ["session-memory", "config", "show", "--defaults", "--json"]
        main()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr.endswith("collecting: True\n")
