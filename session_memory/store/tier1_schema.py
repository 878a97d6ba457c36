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
            chunks INTEGER NOT NULL DEFAULT 0)""",
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
        """CREATE TABLE cursors (
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            phys_path TEXT NOT NULL,
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
        "CREATE INDEX cursors_by_phys_path ON cursors (source, phys_path)",
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
]
