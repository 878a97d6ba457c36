"""The systemd user unit: rendered with this install's real paths, installed, removed, asked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

from session_memory import formats, safe_write
from session_memory.config import Settings, user_config_path
from session_memory.memory import daemon_status
from session_memory.store import db

UNIT_NAME = "session-memory.service"
SYSTEMCTL_TIMEOUT = 20
# Variables that say where our config and data live. The user manager starts the daemon
# without your shell's environment, so the unit keeps those set where it was installed
# (and the formats' root variables): the daemon then reads the roots and store the
# commands do.
PATH_VARIABLES = ("SESSION_MEMORY_CONFIG", "XDG_CONFIG_HOME", "XDG_DATA_HOME")


def unit_template() -> str:
    packaged = resources.files("session_memory").joinpath(UNIT_NAME)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # A source checkout (editable install): the shipped file itself.
    return (Path(__file__).resolve().parent.parent / "systemd" / UNIT_NAME).read_text("utf-8")


def unit_path() -> Path:
    return Path(platformdirs.user_config_dir()) / "systemd" / "user" / UNIT_NAME


def entry_point() -> list[str]:
    """The command that runs this installation: its `session-memory` script when there is
    one beside the interpreter (a venv, pipx, a user install), else `python -m`."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "session-memory" and argv0.is_file():
        return [str(argv0.resolve())]
    # Not resolved: a venv's python is a symlink whose target does not know the venv.
    beside = Path(os.path.abspath(sys.executable)).parent / "session-memory"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [os.path.abspath(sys.executable), "-m", "session_memory"]


def _quote(arg: str, *, exec_line: bool = True) -> str:
    """One word of a unit setting, quoted as systemd reads it; % (and in a command line $)
    escaped, so a path is never taken for a specifier or a variable."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if exec_line:
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"' if re.search(r'[\s"\\]', arg) else escaped


def pinned_environment() -> dict[str, str]:
    """The variables of PATH_VARIABLES and the formats' root variables set (not empty) here."""
    names = dict.fromkeys((*PATH_VARIABLES, *formats.root_variables()))
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def render_unit(command: list[str], data_dir: Path, config_path: Path | None = None,
                environment: dict[str, str] | None = None) -> str:
    """The shipped unit with the real program, data folder and `environment` in place of the
    defaults."""
    words = [*command, *(["--config", str(config_path)] if config_path else []), "daemon"]
    text = unit_template()
    exec_start = "ExecStart=" + " ".join(_quote(w) for w in words)
    exec_start += "".join(f"\nEnvironment={_quote(f'{name}={value}', exec_line=False)}"
                          for name, value in (environment or {}).items())
    text = re.sub(r"(?m)^ExecStart=.*$", lambda _m: exec_start, text)
    text = re.sub(r"(?m)^ReadWritePaths=.*$",
                  "ReadWritePaths=" + _quote(str(data_dir), exec_line=False), text)
    return text


def user_manager_answers() -> bool:
    if shutil.which("systemctl") is None:
        return False
    try:
        return subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True,
                              timeout=SYSTEMCTL_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


ENABLE = ["systemctl", "--user", "enable", "--now", "session-memory"]
LINGER = ["loginctl", "enable-linger"]


def install(settings: Settings, *, config_path: Path | None = None,
            start: bool = True) -> dict[str, Any]:
    """Write the unit, create our folders; enable and start it where a user manager answers."""
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db.private_dir(settings.data_dir)  # ReadWritePaths= must exist, or the unit cannot start
    db.private_dir(user_config_path().parent)  # where the config, naming the roots, goes
    text = render_unit(entry_point(), settings.data_dir,
                       config_path.resolve() if config_path else None, pinned_environment())
    safe_write.replace_file(path, [text.encode("utf-8")], mode=0o644)  # not a secret
    result: dict[str, Any] = {"unit_path": str(path), "commands": [" ".join(ENABLE),
                                                                   " ".join(LINGER)],
                              "ran": []}
    if start and user_manager_answers():
        for cmd in (["systemctl", "--user", "daemon-reload"], ENABLE, LINGER):
            result["ran"].append(_run(cmd))
    return result


def uninstall(*, stop: bool = True) -> dict[str, Any]:
    path = unit_path()
    result: dict[str, Any] = {"unit_path": str(path), "removed": False, "ran": []}
    manager = stop and user_manager_answers()
    if manager:
        result["ran"].append(_run(["systemctl", "--user", "disable", "--now", "session-memory"]))
    if path.exists():
        path.unlink()
        result["removed"] = True
    if manager:
        result["ran"].append(_run(["systemctl", "--user", "daemon-reload"]))
    return result


def status(settings: Settings) -> dict[str, Any]:
    path = unit_path()
    result: dict[str, Any] = {"unit_path": str(path), "installed": path.exists(),
                              "manager": False, "active": None, "enabled": None,
                              "daemon": daemon_status(settings.data_dir)}
    if user_manager_answers():
        result["manager"] = True
        for key in ("active", "enabled"):
            done = _run(["systemctl", "--user", f"is-{key}", "session-memory"])
            result[key] = done["output"] or None
    return result


def _run(cmd: list[str]) -> dict[str, Any]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
        return {"command": " ".join(cmd), "returncode": done.returncode,
                "output": (done.stdout + done.stderr).strip()}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"command": " ".join(cmd), "returncode": None, "output": str(e)}
