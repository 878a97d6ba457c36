"""The process the crash harness kills: `python -m tests.crash.child CONFIG MODE SEED EXPORTS`.

MODE `random` runs a random mix of ingest, seal, deep seal, analyze, sweep, forget and
export until it is killed; MODE `script` runs every kind of commit once, in order, and exits (the
parent names the commit to die at with SESSION_MEMORY_CRASH_AT). Each acknowledged
operation is one line on stdout, flushed at once:

    begin <op> [arg]          the operation starts (the one in doubt if the kill comes now)
    end <op>                  it returned
    stored <id> <path> <n> <sha256>   export returned these bytes for the session's file
    forgot <id>               forget returned
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
from pathlib import Path

import zstandard

from session_memory import config
from session_memory.errors import SessionMemoryError
from session_memory.memory import Memory
from session_memory.store import db
from session_memory.store import tier1 as tier1_mod
from tests.store import old_stores

# Packs of however few sessions have ended (the real threshold waits for 8 MiB of them),
# and the harness's larger sessions (its `spare` ones) too large to pack: both ways a
# session is deep-sealed are among the commits killed.
tier1_mod.PACK_MIN_RAW_BYTES = 0
tier1_mod.PACK_MEMBER_MAX = 6000
# Every commit wakes the background checkpoint (the real threshold is 4 MiB of WAL): the
# kills land while one is copying the WAL into the database, and kill point `checkpoint`
# is reached.
db.CHECKPOINT_PAGES = 1


def say(*parts: object) -> None:
    sys.stdout.write("\t".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


class Child:
    def __init__(self, memory: Memory, rng: random.Random, exports: Path) -> None:
        self.m, self.rng = memory, rng
        self.exports = exports / str(os.getpid())
        self.n = 0

    def ack(self, ids: list[str]) -> None:
        """Export each session and report exactly what came back."""
        for sid in ids:
            self.n += 1
            out = self.exports / str(self.n)
            try:
                paths = self.m.export(sid, out)
            except SessionMemoryError:
                continue  # evicted (its report says so) or forgotten: nothing to vouch for
            for p in paths:
                data = p.read_bytes()
                say("stored", sid, p.relative_to(out).as_posix(), len(data),
                    hashlib.sha256(data).hexdigest())

    def op(self, name: str, *args: object) -> None:
        say("begin", name, *args)
        getattr(self, f"do_{name.replace('-', '_')}")(*args)
        say("end", name)

    def do_ingest(self) -> None:
        summary = self.m.ingest()
        self.ack(sorted(summary.sessions))

    def do_seal(self) -> None:
        self.m.seal()

    def do_deep_seal(self) -> None:
        self.m.deep_seal()

    def do_analyze(self) -> None:
        self.m.analyze()

    def do_sweep(self) -> None:
        self.m.sweep()

    def do_plant(self, like: str = "%spare-%") -> None:
        """Give the sessions (ids LIKE `like`) deep-sealed since the last time a dictionary,
        as an earlier version's idle work did (this one trains none): forgetting one of
        them retires it, and the sessions using it are recompressed without it."""
        sessions = old_stores.frames_only(self.m.tier1, like)
        if sessions:
            with contextlib.suppress(zstandard.ZstdError):  # too little to learn from
                old_stores.plant_dictionary(self.m.tier1, sessions, size=4096)

    def do_forget(self, sid: str) -> None:
        self.m.forget(sid)
        say("forgot", sid)

    def do_export(self) -> None:
        ids = [s["id"] for s in self.m.sessions() if s["state"] != "evicted"]
        self.ack(self.rng.sample(ids, min(3, len(ids))))

    def do_pin(self, sid: str) -> None:
        self.m.pin(sid, True)
        self.m.pin(sid, False)

    def do_mark_ended(self, sid: str) -> None:
        self.m.tier1.mark_ended(sid)

    def do_repair(self) -> None:
        self.m.check(repair=True)

    def forget_candidate(self) -> str | None:
        ids = sorted(s["id"] for s in self.m.sessions() if s["state"] != "active")
        return self.rng.choice(ids) if ids else None

    def trained_candidate(self) -> str | None:
        """A session a live dictionary was trained on: forgetting it retires the dictionary."""
        ids = sorted(str(r[0]) for r in self.m.tier1.conn.execute(
            "SELECT session_id FROM dictionary_sessions") if "spare-" in str(r[0]))
        return self.rng.choice(ids) if ids else None

    def random_mix(self) -> None:
        ops = ["ingest", "seal", "deep-seal", "analyze", "sweep", "forget", "export", "plant"]
        weights = [6, 2, 1, 3, 2, 1, 2, 1]
        while True:
            name = self.rng.choices(ops, weights)[0]
            if name == "forget":
                sid = self.forget_candidate()
                if sid:
                    self.op("forget", sid)
            elif name == "plant":
                self.op("plant", "%")
            else:
                self.op(name)

    def script(self) -> None:
        """Every commit name once: ingest (packing a backfill), seal, deep seal (repacking),
        analyze, forget of a session a dictionary was trained on (planted, as an earlier
        version left one), pin, mark-ended, seal and deep seal again (packing), each sweep
        pass and its report, forget (both tiers), repair."""
        self.op("ingest")
        self.op("seal")
        self.op("deep-seal")  # ingest's packs repacked harder
        self.op("plant")
        self.op("analyze")
        trained = self.trained_candidate()
        if trained:  # before the sweep evicts the sessions using the dictionary
            self.op("forget", trained)
        sessions = self.m.sessions()
        if sessions:
            self.op("pin", sessions[0]["id"])
        active = [s["id"] for s in sessions if s["state"] == "active"]
        if active:
            self.op("mark-ended", active[0])
            self.op("seal")
            self.op("deep-seal")  # the newly ended session packed
        self.op("sweep")
        sid = self.forget_candidate()
        if sid:
            self.op("forget", sid)
        self.op("repair")


def main() -> None:
    cfg, mode, seed, exports = sys.argv[1:5]
    with Memory(config.load(Path(cfg))) as memory:
        memory.tier1  # noqa: B018 - open (and migrate) before saying ready
        memory.tier2  # noqa: B018
        say("ready")
        child = Child(memory, random.Random(int(seed)), Path(exports))
        if mode == "random":
            child.random_mix()
        else:
            child.script()


if __name__ == "__main__":
    main()
