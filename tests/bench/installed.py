"""The package as users run it. `pip install .` (the README's first command) compiles every
module to bytecode when it installs; the dev venv's editable install leaves the package as
source, and where PYTHONDONTWRITEBYTECODE is set nothing ever writes the bytecode, so each
process compiles the whole package again (over 100 ms before a command starts). The
editable install puts the checkout on sys.path with a plain .pth line, no import hook: once
compiled, a process imports the package as an installed one does. Benchmarks that start
`session-memory` as a subprocess compile it first, so they time what users run."""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "session_memory"


def compile_package() -> None:
    """Bytecode for every module of the package, as `pip install .` writes it (with this
    interpreter, the one the command runs under); up-to-date files are left as they are."""
    if not compileall.compile_dir(PACKAGE, quiet=1):
        raise RuntimeError(f"{PACKAGE}: some modules do not compile")
