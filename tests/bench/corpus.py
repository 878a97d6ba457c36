"""A generated corpus of agent-like JSONL sessions, shared by the benchmarks.

Sizes follow what heavy users see (median ~100 KB, a long tail past 5 MB); the text is
Zipf-distributed words, code-like tool output, ids and timestamps, so it compresses
about like real session files do.
"""

from __future__ import annotations

import calendar
import json
import os
import random
import time
import uuid
from pathlib import Path

_VOCABULARY = """
the a to of and in is it for that this with on be as are you we can file function
error test return import class def self value data path line code fix run build
config session user assistant tool result output input read write edit command
change add remove update check type string number list dict none true false async
await request response server client module package version install debug log
message token cache model project branch commit diff patch review refactor
"""
WORDS = [f"w{i}" for i in range(50)] + _VOCABULARY.split()
CODE = [
    "def {n}(self, path: str) -> None:\n    with open(path) as f:\n        return f.read()\n",
    "import os\nimport sys\nfrom pathlib import Path\n",
    "  File \"/home/dev/proj/src/{n}.py\", line {l}, in {n}\n    raise ValueError(x)\n",
    "for (let i = 0; i < items.length; i++) {{ total += items[i].{n}; }}\n",
    "$ pytest -q tests/test_{n}.py\n..F.\nFAILED tests/test_{n}.py::test_{n} - assert {l} == 0\n",
]


def _text(rnd: random.Random, n_words: int) -> str:
    words = rnd.choices(WORDS, weights=[1 / (i + 1) for i in range(len(WORDS))], k=n_words)
    return " ".join(words)


def _line(rnd: random.Random, sid: str, i: int, start: float) -> str:
    kind = rnd.random()
    # A session's records a few seconds apart, as an agent writes them: hours, not weeks.
    at = time.gmtime(start + 7 * i)
    base = {"parentUuid": str(uuid.UUID(int=rnd.getrandbits(128))), "isSidechain": False,
            "userType": "external", "cwd": "/home/dev/projects/api-server", "sessionId": sid,
            "version": "2.0.14", "gitBranch": "main",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", at)
                         + f".{rnd.randrange(1000):03d}Z",
            "uuid": str(uuid.UUID(int=rnd.getrandbits(128)))}
    if kind < 0.45:
        base |= {"type": "assistant", "message": {
            "id": f"msg_{rnd.getrandbits(64):016x}", "model": "claude-sonnet-4-5",
            "role": "assistant",
            "content": [{"type": "text", "text": _text(rnd, rnd.randrange(10, 200))}],
            "usage": {"input_tokens": rnd.randrange(1, 5000),
                      "output_tokens": rnd.randrange(1, 900),
                      "cache_read_input_tokens": rnd.randrange(0, 90000)}}}
    elif kind < 0.85:
        code = "".join(rnd.choice(CODE).format(n=rnd.choice(WORDS), l=rnd.randrange(999))
                       for _ in range(rnd.randrange(1, 30)))
        base |= {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{rnd.getrandbits(64):016x}",
             "content": code}]}}
    else:
        base |= {"type": "user", "message": {"role": "user",
                                             "content": _text(rnd, rnd.randrange(5, 60))}}
    return json.dumps(base) + "\n"


def write_session(path: Path, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    sid = str(uuid.UUID(int=rnd.getrandbits(128)))
    start = 1_790_000_000 + rnd.randrange(60 * 86400)  # some time in the two months before
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        i = 0
        while written < size:
            line = _line(rnd, sid, i, start)
            f.write(line)
            written += len(line)
            i += 1


def write_subagent(parent: Path, path: Path, seed: int) -> None:
    """A sidechain transcript as Claude Code writes it: it replays part of its parent's
    conversation (FORMATS.md: "sidechain files can replay parent messages"), then goes on
    with work of its own."""
    rnd = random.Random(seed)
    lines = parent.read_bytes().splitlines(keepends=True)
    start = rnd.randrange(max(1, len(lines) // 2))
    replay = lines[start: start + rnd.randrange(1, max(2, len(lines) // 3))]
    agent = f"a{rnd.getrandbits(40):010x}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for line in replay:
            f.write(line.replace(b'"isSidechain": false', b'"isSidechain": true, "agentId": "'
                                 + agent.encode() + b'"'))
        own = int(sum(map(len, replay)) * rnd.uniform(0.5, 1.5))
        last = json.loads((replay or lines)[-1])
        sid = last["sessionId"]
        # Its own records follow the part of its parent's it replayed.
        after = calendar.timegm(time.strptime(last["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) + 7
        written = 0
        i = 0
        while written < own:
            line = _line(rnd, sid, i, after).replace('"isSidechain": false', '"isSidechain": true')
            f.write(line.encode())
            written += len(line)
            i += 1


def build(root: Path, total_bytes: int = 210 * 1024 * 1024, seed: int = 1) -> list[Path]:
    """Write the corpus under root once; later calls reuse it. About a third of the
    sessions have subagent transcripts beside them, as real Claude Code folders do."""
    marker = root / f".complete-{total_bytes}-{seed}-v3"
    if marker.exists():
        return sorted(p for p in root.rglob("*.jsonl"))
    if root.exists():
        import shutil

        shutil.rmtree(root)
    rnd = random.Random(seed)
    sizes = [6 * 2**20, 9 * 2**20, 14 * 2**20]  # the long tail: a few sessions past 5 MB
    while sum(sizes) < total_bytes:
        sizes.append(int(min(rnd.lognormvariate(11.5, 1.1), 4 * 2**20)))  # median ~100 KB
    paths = []
    written = 0
    for n, size in enumerate(sizes):
        sid = uuid.UUID(int=rnd.getrandbits(128))
        p = root / f"-home-dev-project{n % 40}" / f"{sid}.jsonl"
        write_session(p, size, seed * 100_003 + n)
        paths.append(p)
        written += size
        if rnd.random() < 0.35 and size < 4 * 2**20:
            for k in range(rnd.randrange(1, 4)):
                sub = p.parent / str(sid) / "subagents" / f"agent-{n}-{k}.jsonl"
                write_subagent(p, sub, seed * 7919 + n * 10 + k)
                paths.append(sub)
                written += sub.stat().st_size
        if written >= total_bytes:
            break
    marker.touch()
    return sorted(paths)


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that across exec,
    so a child forked from a big parent reports the parent's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def du(paths: list[Path]) -> int:
    return sum(os.path.getsize(p) for p in paths)
