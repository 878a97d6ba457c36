"""Tier 1 schema. Accounting is kept by triggers, so it changes in the same transaction
as the chunks it counts and cannot drift from them."""

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID""",
        """CREATE TABLE totals (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            raw_bytes INTEGER NOT NULL, stored_bytes INTEGER NOT NULL, chunks INTEGER NOT NULL)""",
        "INSERT INTO totals VALUES (1, 0, 0, 0)",
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            native_id TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'analyzed', 'evicted')),
            pinned INTEGER NOT NULL DEFAULT 0,
            ended_hint INTEGER NOT NULL DEFAULT 0,
            sealed INTEGER NOT NULL DEFAULT 0,
            frame_gen INTEGER NOT NULL DEFAULT 0,
            first_seen REAL NOT NULL,
            last_write REAL NOT NULL,
            started_at REAL,
            ended_at REAL,
            analyzed_at REAL,
            evicted_at REAL,
            raw_bytes INTEGER NOT NULL DEFAULT 0,
            stored_bytes INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX sessions_by_state ON sessions (state, last_write)",
        "CREATE INDEX sessions_by_analyzed ON sessions (state, analyzed_at)",
        # The sweep's candidates, in the order each pass takes them (retention.py). Partial
        # indexes hold only what a pass may evict, so an empty pass costs one index probe.
        "CREATE INDEX sweep_by_age ON sessions (coalesce(ended_at, last_write), id) "
        "WHERE state = 'analyzed' AND pinned = 0",
        "CREATE INDEX sweep_by_analyzed ON sessions (coalesce(analyzed_at, 0), id) "
        "WHERE state = 'analyzed' AND pinned = 0",
        "CREATE INDEX sweep_unanalyzed_by_age ON sessions (coalesce(ended_at, last_write), id) "
        "WHERE state = 'open' AND pinned = 0",
        """CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id),
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            version INTEGER NOT NULL,
            base_offset INTEGER NOT NULL DEFAULT 0,
            mtime REAL,
            created_at REAL NOT NULL,
            raw_bytes INTEGER NOT NULL DEFAULT 0,
            stored_bytes INTEGER NOT NULL DEFAULT 0,
            chunks INTEGER NOT NULL DEFAULT 0,
            sealed_len INTEGER NOT NULL DEFAULT 0,
            stream_offset INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX files_by_session ON files (session_id)",
        "CREATE UNIQUE INDEX files_by_path ON files (source, path, version, base_offset)",
        """CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files (id),
            offset INTEGER NOT NULL,
            raw_len INTEGER NOT NULL,
            crc INTEGER NOT NULL,
            level INTEGER NOT NULL,
            data BLOB NOT NULL)""",
        "CREATE UNIQUE INDEX chunks_by_file ON chunks (file_id, offset)",
        # A sealed session is one stream (its files one after another) cut into large
        # frames: subagent transcripts repeat their parent's text, so compressing a
        # session's files together finds far more to share than file by file. A seal
        # stages a new generation of frames, then switches to it in one short transaction.
        """CREATE TABLE frames (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id),
            generation INTEGER NOT NULL,
            stream_offset INTEGER NOT NULL,
            raw_len INTEGER NOT NULL,
            crc INTEGER NOT NULL,
            level INTEGER NOT NULL,
            data BLOB NOT NULL)""",
        "CREATE UNIQUE INDEX frames_by_session ON frames (session_id, generation, stream_offset)",
        """CREATE TABLE cursors (
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            phys_path TEXT,
            session_id TEXT NOT NULL,
            file_id INTEGER NOT NULL,
            version INTEGER NOT NULL,
            run INTEGER NOT NULL DEFAULT 0,
            offset INTEGER NOT NULL,
            head_fp BLOB,
            tail_fp BLOB,
            dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER,
            PRIMARY KEY (source, path)) WITHOUT ROWID""",
        "CREATE INDEX cursors_by_session ON cursors (session_id)",
        """CREATE TRIGGER chunk_added AFTER INSERT ON chunks BEGIN
            UPDATE files SET raw_bytes = raw_bytes + NEW.raw_len,
                stored_bytes = stored_bytes + length(NEW.data), chunks = chunks + 1
                WHERE id = NEW.file_id;
            UPDATE totals SET raw_bytes = raw_bytes + NEW.raw_len,
                stored_bytes = stored_bytes + length(NEW.data), chunks = chunks + 1;
        END""",
        """CREATE TRIGGER chunk_removed AFTER DELETE ON chunks BEGIN
            UPDATE files SET raw_bytes = raw_bytes - OLD.raw_len,
                stored_bytes = stored_bytes - length(OLD.data), chunks = chunks - 1
                WHERE id = OLD.file_id;
            UPDATE totals SET raw_bytes = raw_bytes - OLD.raw_len,
                stored_bytes = stored_bytes - length(OLD.data), chunks = chunks - 1;
        END""",
        """CREATE TRIGGER frame_added AFTER INSERT ON frames BEGIN
            UPDATE sessions SET stored_bytes = stored_bytes + length(NEW.data)
                WHERE id = NEW.session_id;
            UPDATE totals SET raw_bytes = raw_bytes + NEW.raw_len,
                stored_bytes = stored_bytes + length(NEW.data), chunks = chunks + 1;
        END""",
        """CREATE TRIGGER frame_removed AFTER DELETE ON frames BEGIN
            UPDATE sessions SET stored_bytes = stored_bytes - length(OLD.data)
                WHERE id = OLD.session_id;
            UPDATE totals SET raw_bytes = raw_bytes - OLD.raw_len,
                stored_bytes = stored_bytes - length(OLD.data), chunks = chunks - 1;
        END""",
        """CREATE TRIGGER file_counted AFTER UPDATE OF raw_bytes, stored_bytes ON files BEGIN
            UPDATE sessions SET raw_bytes = raw_bytes + NEW.raw_bytes - OLD.raw_bytes,
                stored_bytes = stored_bytes + NEW.stored_bytes - OLD.stored_bytes
                WHERE id = NEW.session_id;
        END""",
        """CREATE TRIGGER file_removed AFTER DELETE ON files BEGIN
            UPDATE sessions SET raw_bytes = raw_bytes - OLD.raw_bytes,
                stored_bytes = stored_bytes - OLD.stored_bytes
                WHERE id = OLD.session_id;
        END""",
    ],
    [
        # The level a session's current frames were compressed at: sessions sealed when
        # they ended are recompressed harder later, when the daemon has nothing else to do.
        "ALTER TABLE sessions ADD COLUMN seal_level INTEGER NOT NULL DEFAULT 0",
        "UPDATE sessions SET seal_level = coalesce((SELECT max(level) FROM frames f"
        " WHERE f.session_id = sessions.id AND f.generation = sessions.frame_gen), 0)",
        "CREATE INDEX sessions_by_seal_level ON sessions (seal_level, last_write) WHERE sealed = 1",
    ],
    [
        # Trained zstd dictionaries, one current per source, for the frames of the idle
        # recompression: sessions of one tool share their structure and a project's files,
        # which a session's own stream cannot find in itself. A dictionary's bytes count in
        # the store's totals (not in any session's); it goes with the last frame using it.
        # dictionary_sessions names the sessions it was trained on: forgetting one of them
        # retires it (no new frames use it) and recompresses the sessions that do.
        # AUTOINCREMENT: a reader caches dictionaries by id, so an id is never used twice.
        # (No longer trained, nor used by new frames: packs left them nothing to gain. These
        # stay for the stores that hold them; see Tier1's dictionaries section.)
        """CREATE TABLE dictionaries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            trained_at REAL NOT NULL,
            retired INTEGER NOT NULL DEFAULT 0,
            data BLOB NOT NULL)""",
        """CREATE TABLE dictionary_sessions (
            dict_id INTEGER NOT NULL REFERENCES dictionaries (id),
            session_id TEXT NOT NULL,
            PRIMARY KEY (dict_id, session_id)) WITHOUT ROWID""",
        "CREATE INDEX dictionary_sessions_by_session ON dictionary_sessions (session_id)",
        "ALTER TABLE frames ADD COLUMN dict_id INTEGER REFERENCES dictionaries (id)",
        "CREATE INDEX frames_by_dict ON frames (dict_id) WHERE dict_id IS NOT NULL",
        """CREATE TRIGGER dictionary_added AFTER INSERT ON dictionaries BEGIN
            UPDATE totals SET stored_bytes = stored_bytes + length(NEW.data);
        END""",
        """CREATE TRIGGER dictionary_removed AFTER DELETE ON dictionaries BEGIN
            UPDATE totals SET stored_bytes = stored_bytes - length(OLD.data);
            DELETE FROM dictionary_sessions WHERE dict_id = OLD.id;
        END""",
        """CREATE TRIGGER dictionary_unused AFTER DELETE ON frames
            WHEN OLD.dict_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM frames WHERE dict_id = OLD.dict_id) BEGIN
            DELETE FROM dictionaries WHERE id = OLD.dict_id;
        END""",
    ],
    [
        # Packs: small ended sessions compressed together, in the order the sweep takes
        # them, as one zstd frame with a window as large. Sessions repeat each other
        # (a resumed session copies its parent, subagents their parent's prompt, a
        # project's sessions read the same files), which no session's own frames can find:
        # on the workstation bench a pack stores them in 0.55-0.6 of per-file zstd -3.
        # A member is one file's sealed bytes. Evicting a session marks its members dead
        # (`live` 0): a pack goes with its last live member; until then the sweep, a
        # forget or the idle compaction cuts the dead ones out by rewriting it.
        """CREATE TABLE packs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at REAL NOT NULL,
            raw_len INTEGER NOT NULL,
            level INTEGER NOT NULL,
            data BLOB NOT NULL)""",
        """CREATE TABLE pack_members (
            pack_id INTEGER NOT NULL REFERENCES packs (id),
            offset INTEGER NOT NULL,
            raw_len INTEGER NOT NULL,
            crc INTEGER NOT NULL,
            file_id INTEGER NOT NULL,
            session_id TEXT NOT NULL,
            share INTEGER NOT NULL,
            live INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (pack_id, offset)) WITHOUT ROWID""",
        "CREATE INDEX pack_members_by_file ON pack_members (file_id) WHERE live",
        "CREATE INDEX pack_members_by_session ON pack_members (session_id)",
        # A pack's bytes count in the store's totals; each live member's share of them in
        # its session's, so that a session's stored bytes still add up to the store's.
        """CREATE TRIGGER pack_added AFTER INSERT ON packs BEGIN
            UPDATE totals SET raw_bytes = raw_bytes + NEW.raw_len,
                stored_bytes = stored_bytes + length(NEW.data), chunks = chunks + 1;
        END""",
        """CREATE TRIGGER pack_removed AFTER DELETE ON packs BEGIN
            UPDATE totals SET raw_bytes = raw_bytes - OLD.raw_len,
                stored_bytes = stored_bytes - length(OLD.data), chunks = chunks - 1;
            DELETE FROM pack_members WHERE pack_id = OLD.id;
        END""",
        """CREATE TRIGGER pack_member_added AFTER INSERT ON pack_members WHEN NEW.live BEGIN
            UPDATE sessions SET stored_bytes = stored_bytes + NEW.share
                WHERE id = NEW.session_id;
        END""",
        """CREATE TRIGGER pack_member_died AFTER UPDATE OF live ON pack_members
            WHEN OLD.live AND NOT NEW.live BEGIN
            UPDATE sessions SET stored_bytes = stored_bytes - OLD.share
                WHERE id = OLD.session_id;
            DELETE FROM packs WHERE id = OLD.pack_id AND NOT EXISTS
                (SELECT 1 FROM pack_members WHERE pack_id = OLD.pack_id AND live);
        END""",
        """CREATE TRIGGER pack_member_removed AFTER DELETE ON pack_members BEGIN
            UPDATE sessions SET stored_bytes = stored_bytes - OLD.share
                WHERE id = OLD.session_id AND OLD.live;
            DELETE FROM packs WHERE id = OLD.pack_id AND NOT EXISTS
                (SELECT 1 FROM pack_members WHERE pack_id = OLD.pack_id AND live);
        END""",
    ],
    [
        # The sweep asks after every eviction how much evicted sessions hold in packs:
        # their few rows, not every member's.
        "CREATE INDEX pack_members_dead ON pack_members (pack_id) WHERE NOT live",
    ],
]
