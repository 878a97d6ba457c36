"""A generated history shaped like one workstation's (issue 11): thousands of sessions of
Claude Code, Codex, Gemini CLI and Aider, in the proportions of real use, with the
repetition real histories have.

- Sizes: lognormal, median about 60 KB, p90 about 500 KB, p99 about 5 MB, and a few
  sessions past 50 MB (a runaway Claude Code session, a long Codex rollout).
- Projects: each has its own source files; tool results read them again and again, in
  every session of the project (the same file read in many sessions).
- Resumed Claude Code sessions begin with a copy of their parent conversation; Codex forks
  replay their parent's history; subagents repeat their parent's prompt and part of its
  work.

    build(root) -> {source name: source root}; the layout each format expects.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.corpus import CODE, WORDS

SHARES = {"claude-code": 0.62, "codex": 0.22, "gemini-cli": 0.10, "aider": 0.06}
RESUMED_SHARE = 0.15  # Claude Code sessions resumed from an earlier one of the project
FORKED_SHARE = 0.10  # Codex sessions forked from an earlier one
SUBAGENT_SHARE = 0.30  # Claude Code sessions with subagent transcripts
PROJECTS = 60
MEDIAN_BYTES, SIGMA = 55_000, 1.5  # lognormal: p90 about 0.4 MB
TAIL = [5e6 + 3e5 * k for k in range(12)] + [12e6, 20e6]  # p99 about 5 MB, and beyond
HUGE = [("claude-code", 56e6), ("codex", 52e6)]  # the few past 50 MB
VERSION = "ws-v4"


def _words(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choices(_VOCABULARY, cum_weights=_CUM_WEIGHTS, k=n))


def _vocabulary(n: int) -> list[str]:
    """The bench's common words first, then made-up ones: a vocabulary as large as a
    project's prose and identifiers, Zipf-distributed."""
    rnd = random.Random(0)
    made = ["".join(rnd.choices("abcdefghijklmnopqrstuvwxyz_", k=rnd.randrange(3, 12)))
            for _ in range(n)]
    return WORDS + made


_VOCABULARY = _vocabulary(6000)
_CUM_WEIGHTS = list(itertools.accumulate(1 / (i + 1) ** 1.05
                                                       for i in range(len(_VOCABULARY))))


@dataclass
class Project:
    name: str
    cwd: str
    files: dict[str, str]  # path -> content, read by tool calls in every session
    sessions: list[list[str]] = field(default_factory=list)  # earlier sessions' lines


def _project(rnd: random.Random, n: int) -> Project:
    name = f"{rnd.choice(['api', 'web', 'cli', 'infra', 'ml', 'docs'])}-{n}"
    files = {}
    for k in range(rnd.randrange(8, 30)):
        body = "".join(rnd.choice(CODE).format(n=rnd.choice(WORDS), l=rnd.randrange(999))
                       + f"# {_words(rnd, rnd.randrange(3, 15))}\n"
                       for _ in range(rnd.randrange(10, 120)))
        files[f"src/{rnd.choice(WORDS)}_{k}.py"] = body
    return Project(name, f"/home/dev/code/{name}", files)


def _numbered(text: str, start: int = 1) -> str:
    return "".join(f"{i:6d}\u2192{line}\n" for i, line in enumerate(text.splitlines(), start))


def _tool_output(rnd: random.Random, project: Project) -> tuple[str, str]:
    """(tool, output): mostly files of the project read again, else a command's output."""
    if rnd.random() < 0.6:
        path = rnd.choice(list(project.files))
        return f"Read {project.cwd}/{path}", _numbered(project.files[path])
    out = "".join(rnd.choice(CODE).format(n=rnd.choice(WORDS), l=rnd.randrange(999))
                  for _ in range(rnd.randrange(1, 25)))
    return "Bash", out


def _ts(rnd: random.Random, day: int, i: int) -> str:
    return (f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{i // 3600 % 24:02d}:"
            f"{i // 60 % 60:02d}:{i % 60:02d}.{rnd.randrange(1000):03d}Z")


# -- Claude Code ---------------------------------------------------------------------------

def _claude_lines(rnd: random.Random, project: Project, sid: str, size: float, day: int,
                  sidechain: bool = False) -> list[str]:
    lines: list[str] = []
    written, i, parent = 0, 0, None
    while written < size:
        u = str(uuid.UUID(int=rnd.getrandbits(128)))
        base = {"parentUuid": parent, "isSidechain": sidechain, "userType": "external",
                "cwd": project.cwd, "sessionId": sid, "version": "2.0.31",
                "gitBranch": "main", "timestamp": _ts(rnd, day, i * 7), "uuid": u}
        kind = rnd.random()
        if kind < 0.12:
            base |= {"type": "user", "message": {"role": "user",
                                                 "content": _words(rnd, rnd.randrange(5, 80))}}
        elif kind < 0.55:
            tool_id = f"toolu_01{rnd.getrandbits(96):024x}"
            thinking = [{"type": "thinking", "thinking": _words(rnd, rnd.randrange(20, 200)),
                         "signature": base64.b64encode(rnd.randbytes(rnd.randrange(300, 1200)))
                         .decode()}] if rnd.random() < 0.4 else []
            base |= {"type": "assistant", "requestId": f"req_011{rnd.getrandbits(80):020x}",
                     "message": {
                         "id": f"msg_01{rnd.getrandbits(96):024x}", "type": "message",
                         "model": "claude-sonnet-4-5-20250929", "role": "assistant",
                         "content": thinking + [
                             {"type": "text", "text": _words(rnd, rnd.randrange(8, 160))},
                                     {"type": "tool_use", "id": tool_id, "name": "Read",
                                      "input": {"file_path": f"{project.cwd}/"
                                                f"{rnd.choice(list(project.files))}"}}],
                         "stop_reason": "tool_use",
                         "usage": {"input_tokens": rnd.randrange(1, 9),
                                   "cache_creation_input_tokens": rnd.randrange(0, 4000),
                                   "cache_read_input_tokens": rnd.randrange(10_000, 90_000),
                                   "output_tokens": rnd.randrange(20, 900),
                                   "service_tier": "standard"}}}
        else:
            _, out = _tool_output(rnd, project)
            base |= {"type": "user", "message": {"role": "user", "content": [
                {"tool_use_id": f"toolu_01{rnd.getrandbits(96):024x}", "type": "tool_result",
                 "content": out}]},
                "toolUseResult": {"type": "text", "file": {"numLines": out.count("\n")}}}
        line = json.dumps(base, ensure_ascii=False) + "\n"
        lines.append(line)
        written += len(line)
        parent = u
        i += 1
    return lines


def _write_claude(root: Path, rnd: random.Random, project: Project, size: float,
                  day: int) -> int:
    sid = str(uuid.UUID(int=rnd.getrandbits(128)))
    folder = root / f"-home-dev-code-{project.name}"
    folder.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    if project.sessions and rnd.random() < RESUMED_SHARE:
        # Resumed: the new file begins with the parent conversation, under the new id.
        parent = rnd.choice(project.sessions)
        old_sid = json.loads(parent[0]).get("sessionId", "")
        lines = [ln.replace(old_sid, sid) for ln in parent]
    lines += _claude_lines(rnd, project, sid, size - sum(map(len, lines)), day)
    data = "".join(lines).encode()
    (folder / f"{sid}.jsonl").write_bytes(data)
    written = len(data)
    if len(data) < 4e6:
        project.sessions.append(lines)
    if rnd.random() < SUBAGENT_SHARE and size < 20e6:
        for _ in range(rnd.randrange(1, 5)):
            agent = f"a{rnd.getrandbits(28):07x}"
            prompt = _claude_lines(rnd, project, sid, 1, day, sidechain=True)[:1]
            start = rnd.randrange(max(1, len(lines)))
            replay = lines[start: start + rnd.randrange(1, 12)]
            own = _claude_lines(rnd, project, sid, size * rnd.uniform(0.05, 0.4), day,
                                sidechain=True)
            sub = (folder / sid / "subagents" / f"agent-{agent}.jsonl")
            sub.parent.mkdir(parents=True, exist_ok=True)
            body = "".join(prompt + replay + own).replace(
                '"isSidechain": true', f'"isSidechain": true, "agentId": "{agent}"').encode()
            sub.write_bytes(body)
            written += len(body)
    return written


# -- Codex ---------------------------------------------------------------------------------

def _codex_lines(rnd: random.Random, project: Project, size: float, day: int,
                 first: int = 0) -> list[str]:
    lines: list[str] = []
    written, i, total = 0, first, 0
    while written < size:
        ts = _ts(rnd, day, i * 5)
        kind = rnd.random()
        if kind < 0.1:
            rec = {"type": "turn_context", "payload": {
                "cwd": project.cwd, "approval_policy": "on-request", "model": "gpt-5-codex",
                "sandbox_policy": {"mode": "workspace-write"}, "effort": "medium"}}
        elif kind < 0.25:
            rec = {"type": "response_item", "payload": {
                "type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": _words(rnd, rnd.randrange(8, 140))}]}}
        elif kind < 0.45:
            call = f"call_{rnd.getrandbits(96):024x}"
            rec = {"type": "response_item", "payload": {
                "type": "function_call", "name": "shell", "call_id": call,
                "arguments": json.dumps({"command": ["bash", "-lc", f"sed -n 1,200p "
                                                     f"{rnd.choice(list(project.files))}"]})}}
        elif kind < 0.8:
            _, out = _tool_output(rnd, project)
            rec = {"type": "response_item", "payload": {
                "type": "function_call_output", "call_id": f"call_{rnd.getrandbits(96):024x}",
                "output": json.dumps({"output": out, "metadata": {
                    "exit_code": 0, "duration_seconds": round(rnd.random(), 1)}})}}
        elif kind < 0.9:
            rec = {"type": "response_item", "payload": {
                "type": "reasoning", "summary": [{"type": "summary_text",
                                                  "text": _words(rnd, rnd.randrange(5, 60))}],
                "encrypted_content": f"gAAAA{rnd.randbytes(rnd.randrange(200, 900)).hex()}"}}
        else:
            total += rnd.randrange(1000, 20000)
            rec = {"type": "event_msg", "payload": {"type": "token_count", "info": {
                "total_token_usage": {"input_tokens": total, "cached_input_tokens": total // 2,
                                      "output_tokens": total // 10,
                                      "reasoning_output_tokens": total // 20,
                                      "total_tokens": total + total // 10}}}}
        line = json.dumps({"timestamp": ts} | rec) + "\n"
        lines.append(line)
        written += len(line)
        i += 1
    return lines


def _write_codex(root: Path, rnd: random.Random, project: Project, size: float, day: int,
                 forks: list[list[str]]) -> int:
    sid = str(uuid.UUID(int=rnd.getrandbits(128)))
    folder = root / "sessions" / "2026" / f"{1 + day // 28 % 12:02d}" / f"{1 + day % 28:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {"id": sid, "timestamp": _ts(rnd, day, 0), "cwd": project.cwd,
                               "originator": "codex_cli_rs", "cli_version": "0.46.0",
                               "git": {"commit_hash": rnd.randbytes(20).hex(), "branch": "main"}}
    replay: list[str] = []
    if forks and rnd.random() < FORKED_SHARE:
        replay = rnd.choice(forks)[1:]
        meta["forked_from_id"] = "parent"
    head = json.dumps({"timestamp": _ts(rnd, day, 0), "type": "session_meta",
                       "payload": meta}) + "\n"
    lines = [head] + replay + _codex_lines(rnd, project, size - sum(map(len, replay)), day)
    data = "".join(lines).encode()
    name = f"rollout-2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T10-00-00-{sid}.jsonl"
    (folder / name).write_bytes(data)
    if len(data) < 4e6:
        forks.append(lines)
    return len(data)


# -- Gemini CLI ----------------------------------------------------------------------------

def _write_gemini(root: Path, rnd: random.Random, project: Project, size: float,
                  day: int) -> int:
    sid = str(uuid.UUID(int=rnd.getrandbits(128)))
    folder = root / hashlib.sha256(project.cwd.encode()).hexdigest() / "chats"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"sessionId": sid, "projectHash": folder.parent.name,
                         "startTime": _ts(rnd, day, 0), "lastUpdated": _ts(rnd, day, 0),
                         "kind": "main"}) + "\n"]
    written, i = len(lines[0]), 0
    while written < size:
        mid = str(uuid.UUID(int=rnd.getrandbits(128)))
        if rnd.random() < 0.25:
            rec = {"id": mid, "timestamp": _ts(rnd, day, i * 9), "type": "user",
                   "content": [{"text": _words(rnd, rnd.randrange(5, 60))}]}
        else:
            tool, out = _tool_output(rnd, project)
            rec = {"id": mid, "timestamp": _ts(rnd, day, i * 9), "type": "gemini",
                   "content": _words(rnd, rnd.randrange(5, 120)), "model": "gemini-2.5-pro",
                   "thoughts": [{"subject": _words(rnd, 4),
                                 "description": _words(rnd, rnd.randrange(10, 50))}],
                   "tokens": {"input": rnd.randrange(9000, 60000), "output": 300,
                              "cached": 0, "thoughts": 120, "tool": 0, "total": 9420},
                   "toolCalls": [{"id": f"read_file-{rnd.getrandbits(40)}",
                                  "name": "read_file", "args": {"path": tool},
                                  "result": [{"functionResponse": {"response": {
                                      "output": out}}}], "status": "success"}]}
        line = json.dumps(rec) + "\n"
        lines.append(line)
        written += len(line)
        if rnd.random() < 0.1:  # log-structured: the same record appended again
            lines.append(line)
            written += len(line)
        i += 1
    name = f"session-2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T10-00-{sid[:8]}.jsonl"
    data = "".join(lines).encode()
    (folder / name).write_bytes(data)
    return len(data)


# -- Aider ---------------------------------------------------------------------------------

def _write_aider(root: Path, rnd: random.Random, project: Project, size: float,
                 day: int) -> int:
    """One run appended to the repository's history file."""
    history = root / project.name / ".aider.chat.history.md"
    history.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"\n# aider chat started at 2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d} "
             f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}\n\n"
             "> /usr/bin/aider --model sonnet\n> Aider v0.86.1\n\n"]
    written = len(parts[0])
    while written < size:
        path = rnd.choice(list(project.files))
        body = project.files[path]
        cut = body.splitlines(keepends=True)[: rnd.randrange(3, 20)]
        text = (f"#### {_words(rnd, rnd.randrange(5, 40))}\n\n{_words(rnd, rnd.randrange(10, 80))}"
                f"\n\n{path}\n```python\n<<<<<<< SEARCH\n{''.join(cut)}=======\n"
                f"{''.join(cut[::-1])}>>>>>>> REPLACE\n```\n\n"
                f"> Tokens: {rnd.randrange(2, 30)}.{rnd.randrange(10)}k sent, "
                f"{rnd.randrange(50, 900)} received. Cost: $0.0{rnd.randrange(10, 99)} message\n\n")
        parts.append(text)
        written += len(text)
    with history.open("a") as f:
        f.write("".join(parts))
    return written


# -- the whole history ---------------------------------------------------------------------

def build(root: Path, sessions: int = 2000, seed: int = 11) -> dict[str, Path]:
    """Write the history under root once (later calls reuse it); the source roots by name."""
    roots = {name: root / name for name in SHARES}
    marker = root / f".complete-{VERSION}-{sessions}-{seed}"
    if marker.exists():
        return roots
    if root.exists():
        shutil.rmtree(root)
    rnd = random.Random(seed)
    projects = [_project(rnd, n) for n in range(PROJECTS)]
    # Real histories cluster on a few projects: Zipf weights over them.
    weights = [1 / (n + 1) ** 0.8 for n in range(PROJECTS)]
    sizes = [min(rnd.lognormvariate(math.log(MEDIAN_BYTES), SIGMA), 4.5e6)
             for _ in range(sessions - len(TAIL) - len(HUGE))]
    plan = [(rnd.choices(list(SHARES), weights=list(SHARES.values()))[0], s) for s in sizes]
    plan += [("claude-code", s) for s in TAIL] + HUGE
    rnd.shuffle(plan)
    forks: list[list[str]] = []
    for n, (tool, size) in enumerate(plan):
        project = rnd.choices(projects, weights=weights)[0]
        day = n * 300 // len(plan)  # the history spans most of a year, oldest first
        if tool == "claude-code":
            _write_claude(roots[tool], rnd, project, size, day)
        elif tool == "codex":
            _write_codex(roots[tool], rnd, project, size, day, forks)
        elif tool == "gemini-cli":
            _write_gemini(roots[tool], rnd, project, size, day)
        else:
            _write_aider(roots[tool], rnd, project, min(size, 400_000), day)
    # Each file last written when its last record was, as in a history: every session ended.
    old = time.time() - 30 * 86400
    for path in files(roots):
        when = _last_written(path) or old
        os.utime(path, (when, when))
    marker.touch()
    return roots


_STAMP = re.compile(rb"(20\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d)")


def _last_written(path: Path) -> float | None:
    """The last timestamp in a session file: when it was last written."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 64 * 1024))
        found = list(_STAMP.finditer(f.read()))
    if not found:
        return None
    stamp = "-".join(part.decode() for part in found[-1].groups())
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%d-%H-%M")))


def files(roots: dict[str, Path]) -> list[Path]:
    return sorted(p for root in roots.values() for p in root.rglob("*") if p.is_file())


if __name__ == "__main__":
    import statistics
    import sys

    t0 = time.perf_counter()
    built = build(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
    paths = files(built)
    sizes = sorted(p.stat().st_size for p in paths)
    q = statistics.quantiles(sizes, n=100)
    print(f"{len(paths)} files, {sum(sizes) / 2**20:.0f} MiB in {time.perf_counter() - t0:.0f} s;"
          f" median {q[49] / 1e3:.0f} KB, p90 {q[89] / 1e3:.0f} KB, p99 {q[98] / 1e6:.1f} MB,"
          f" max {sizes[-1] / 1e6:.0f} MB")
