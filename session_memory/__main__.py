import gc


def main() -> None:
    # No garbage collection while the command line and the library load (the command
    # turns it on: see cli.cli): they make objects that live as long as the process, and
    # the collections their number set off, each walking all made so far, took 10-15 ms
    # of CPU from a command's start-up.
    gc.disable()
    # Imported only when run: analysis workers begin by importing the main module (so the
    # console script too), and need none of the command line.
    from session_memory.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)


def exit_now(code: object) -> None:
    """End the process as `sys.exit(code)` would, without Python's tear-down of every
    module and object: a command has closed its stores and said all it has to say by now,
    and the tear-down took 15-30 ms of `session-memory ingest` (a tenth of a small
    history's). The atexit handlers still run and the output is flushed; with another
    thread still running, or output that cannot be flushed, Python exits as usual."""
    import atexit
    import os
    import sys
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, exit status 1
        print(code, file=sys.stderr)
        code = 1
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - Python reports it, and sets the status, itself
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    main()
