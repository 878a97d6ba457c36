"""A real opencode.db made from a legacy storage/ tree, the way OpenCode 1.2 makes its own.

The tables are OpenCode's first migration's, as it shipped:
packages/opencode/migration/20260127222353_familiar_lady_ursula/migration.sql (the
anomalyco/opencode repository). The rows are made as its JSON-to-SQLite migration makes
them (packages/opencode/src/storage/json-migration.ts): every id from the file's path, not
its content; a message's and a part's document stored less its ids, as compact JSON; a
session only under a project that has a file; a part only under a migrated message.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

# packages/opencode/migration/20260127222353_familiar_lady_ursula/migration.sql
SCHEMA = """
CREATE TABLE IF NOT EXISTS `project` (
    `id` text PRIMARY KEY,
    `worktree` text NOT NULL,
    `vcs` text,
    `name` text,
    `icon_url` text,
    `icon_color` text,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    `time_initialized` integer,
    `sandboxes` text NOT NULL
);
CREATE TABLE IF NOT EXISTS `message` (
    `id` text PRIMARY KEY,
    `session_id` text NOT NULL,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    `data` text NOT NULL,
    CONSTRAINT `fk_message_session_id_session_id_fk` FOREIGN KEY (`session_id`)
        REFERENCES `session`(`id`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS `part` (
    `id` text PRIMARY KEY,
    `message_id` text NOT NULL,
    `session_id` text NOT NULL,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    `data` text NOT NULL,
    CONSTRAINT `fk_part_message_id_message_id_fk` FOREIGN KEY (`message_id`)
        REFERENCES `message`(`id`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS `permission` (
    `project_id` text PRIMARY KEY,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    `data` text NOT NULL,
    CONSTRAINT `fk_permission_project_id_project_id_fk` FOREIGN KEY (`project_id`)
        REFERENCES `project`(`id`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS `session` (
    `id` text PRIMARY KEY,
    `project_id` text NOT NULL,
    `parent_id` text,
    `slug` text NOT NULL,
    `directory` text NOT NULL,
    `title` text NOT NULL,
    `version` text NOT NULL,
    `share_url` text,
    `summary_additions` integer,
    `summary_deletions` integer,
    `summary_files` integer,
    `summary_diffs` text,
    `revert` text,
    `permission` text,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    `time_compacting` integer,
    `time_archived` integer,
    CONSTRAINT `fk_session_project_id_project_id_fk` FOREIGN KEY (`project_id`)
        REFERENCES `project`(`id`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS `todo` (
    `session_id` text NOT NULL,
    `content` text NOT NULL,
    `status` text NOT NULL,
    `priority` text NOT NULL,
    `position` integer NOT NULL,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    CONSTRAINT `todo_pk` PRIMARY KEY(`session_id`, `position`),
    CONSTRAINT `fk_todo_session_id_session_id_fk` FOREIGN KEY (`session_id`)
        REFERENCES `session`(`id`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS `session_share` (
    `session_id` text PRIMARY KEY,
    `id` text NOT NULL,
    `secret` text NOT NULL,
    `url` text NOT NULL,
    `time_created` integer NOT NULL,
    `time_updated` integer NOT NULL,
    CONSTRAINT `fk_session_share_session_id_session_id_fk` FOREIGN KEY (`session_id`)
        REFERENCES `session`(`id`) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS `message_session_idx` ON `message` (`session_id`);
CREATE INDEX IF NOT EXISTS `part_message_idx` ON `part` (`message_id`);
CREATE INDEX IF NOT EXISTS `part_session_idx` ON `part` (`session_id`);
CREATE INDEX IF NOT EXISTS `session_project_idx` ON `session` (`project_id`);
CREATE INDEX IF NOT EXISTS `session_parent_idx` ON `session` (`parent_id`);
CREATE INDEX IF NOT EXISTS `todo_session_idx` ON `todo` (`session_id`);
"""


def compact(doc: Any) -> str:
    """As drizzle stores a json column: JSON.stringify(value)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    return conn


def build(storage: Path, db: Path, now_ms: int) -> dict[str, int]:
    """opencode.db at `db` from the JSON files under `storage`, in one transaction, as
    json-migration.ts's run() does; how many rows of each kind."""
    conn = connect(db)
    conn.executescript(SCHEMA)
    counts = {"project": 0, "session": 0, "message": 0, "part": 0}
    conn.execute("BEGIN")
    projects = set()
    for f in sorted(storage.glob("project/*.json")):
        data = json.loads(f.read_text())
        time = data.get("time") or {}
        conn.execute(
            "INSERT OR IGNORE INTO project (id, worktree, vcs, name, icon_url, icon_color,"
            " time_created, time_updated, time_initialized, sandboxes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.stem, data.get("worktree") or "/", data.get("vcs"), data.get("name"),
             (data.get("icon") or {}).get("url"), (data.get("icon") or {}).get("color"),
             time.get("created", now_ms), time.get("updated", now_ms),
             time.get("initialized"), compact(data.get("sandboxes") or [])))
        projects.add(f.stem)
        counts["project"] += 1
    sessions = set()
    for f in sorted(storage.glob("session/*/*.json")):
        if f.parent.name not in projects:
            continue
        data = json.loads(f.read_text())
        time, summary = data.get("time") or {}, data.get("summary") or {}
        diffs = summary.get("diffs")
        conn.execute(
            "INSERT OR IGNORE INTO session (id, project_id, parent_id, slug, directory, title,"
            " version, share_url, summary_additions, summary_deletions, summary_files,"
            " summary_diffs, revert, permission, time_created, time_updated,"
            " time_compacting, time_archived)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.stem, f.parent.name, data.get("parentID"), data.get("slug", ""),
             data.get("directory", ""), data.get("title", ""), data.get("version", ""),
             (data.get("share") or {}).get("url"), summary.get("additions"),
             summary.get("deletions"), summary.get("files"),
             None if diffs is None else compact(diffs),
             None if data.get("revert") is None else compact(data["revert"]),
             None if data.get("permission") is None else compact(data["permission"]),
             time.get("created", now_ms), time.get("updated", now_ms),
             time.get("compacting"), time.get("archived")))
        sessions.add(f.stem)
        counts["session"] += 1
    message_sessions: dict[str, str] = {}
    for f in sorted(storage.glob("message/*/*.json")):
        if f.parent.name not in sessions:
            continue
        data = json.loads(f.read_text())
        message_sessions[f.stem] = f.parent.name
        rest = {k: v for k, v in data.items() if k not in ("id", "sessionID")}
        time = data.get("time") or {}
        conn.execute("INSERT OR IGNORE INTO message VALUES (?, ?, ?, ?, ?)",
                     (f.stem, f.parent.name, time.get("created", now_ms),
                      time.get("updated", now_ms), compact(rest)))
        counts["message"] += 1
    for f in sorted(storage.glob("part/*/*.json")):
        sid = message_sessions.get(f.parent.name)
        if sid is None:
            continue
        data = json.loads(f.read_text())
        rest = {k: v for k, v in data.items() if k not in ("id", "messageID", "sessionID")}
        time = data.get("time") or {}
        conn.execute("INSERT OR IGNORE INTO part VALUES (?, ?, ?, ?, ?, ?)",
                     (f.stem, f.parent.name, sid, time.get("created", now_ms),
                      time.get("updated", now_ms), compact(rest)))
        counts["part"] += 1
    conn.execute("COMMIT")
    conn.close()
    return counts


# -- made-up sessions, as many as asked: for a bench, and a crash test -----------------

T0 = 1_760_000_000_000
PROJECT = "0" * 40


def sessions(count: int) -> list[tuple[str, Any]]:
    """(legacy path, document) for every session, message and part."""
    out: list[tuple[str, Any]] = [(f"project/{PROJECT}.json", {
        "id": PROJECT, "worktree": "/work/p", "vcs": "git", "time": {"created": T0}})]
    filler = "lorem ipsum dolor sit amet " * 40
    for s in range(count):
        sid = f"ses_{s:026d}"
        t = T0 + s * 3_600_000
        out.append((f"session/{PROJECT}/{sid}.json", {
            "id": sid, "version": "1.0.107", "projectID": PROJECT, "directory": "/work/p",
            "title": f"session {s}", "time": {"created": t, "updated": t + 600_000}}))
        for m in range(20):
            mid = f"msg_{s:013d}{m:013d}"
            created = t + m * 20_000
            user = m % 2 == 0
            msg: dict[str, Any] = {"id": mid, "sessionID": sid,
                                   "role": "user" if user else "assistant",
                                   "time": {"created": created}}
            if not user:
                msg |= {"time": {"created": created, "completed": created + 9000},
                        "modelID": "claude-sonnet-4-5-20250929", "providerID": "anthropic",
                        "mode": "build", "path": {"cwd": "/work/p", "root": "/work/p"},
                        "cost": 0.0123, "tokens": {"input": 1200, "output": 300,
                                                   "reasoning": 0,
                                                   "cache": {"read": 9000, "write": 100}}}
            out.append((f"message/{sid}/{mid}.json", msg))
            kinds = ["text"] if user else ["step-start", "text", "tool", "step-finish"]
            for p, kind in enumerate(kinds):
                pid = f"prt_{s:013d}{m:010d}{p:03d}"
                part: dict[str, Any] = {"id": pid, "sessionID": sid, "messageID": mid,
                                        "type": kind}
                if kind == "text":
                    part["text"] = f"message {m} of session {s}: {filler}"
                elif kind == "tool":
                    part |= {"tool": "bash", "callID": f"call_{pid}", "state": {
                        "status": "completed", "input": {"command": "make test"},
                        "output": filler * 4, "time": {"start": created, "end": created + 1}}}
                out.append((f"part/{mid}/{pid}.json", part))
    return out


def write_files(storage: Path, docs: list[tuple[str, Any]]) -> None:
    for rel, doc in docs:
        path = storage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
