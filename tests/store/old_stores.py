"""Stores as earlier versions left them, built directly (the package no longer makes them):
what must keep working on a store that is upgraded in place."""

from __future__ import annotations

import zstandard

from session_memory.store.tier1 import DEEP_SEAL_LEVEL, Tier1

_SAMPLE_BYTES = 1024


def frames_only(tier1: Tier1, like: str = "%") -> list[str]:
    """Sealed sessions (ids LIKE `like`) whose bytes are all in frames of their own that
    use no dictionary: those an earlier version's idle work would compress with one."""
    return [str(r[0]) for r in tier1.conn.execute(
        "SELECT id FROM sessions s WHERE id LIKE ? AND sealed = 1 AND state != 'evicted' "
        "AND EXISTS (SELECT 1 FROM frames f WHERE f.session_id = s.id "
        "AND f.generation = s.frame_gen) "
        "AND NOT EXISTS (SELECT 1 FROM frames f WHERE f.session_id = s.id "
        "AND f.dict_id IS NOT NULL) "
        "AND NOT EXISTS (SELECT 1 FROM pack_members m WHERE m.session_id = s.id AND m.live) "
        "AND NOT EXISTS (SELECT 1 FROM files f WHERE f.session_id = s.id AND f.chunks > 0) "
        "ORDER BY id", (like,))]


def plant_dictionary(tier1: Tier1, sessions: list[str], *,
                     trained_on: list[str] | None = None, size: int = 16 * 1024,
                     now: float = 0.0) -> int:
    """What an earlier version's idle work did, in one transaction: train a zstd dictionary
    on the bytes of `trained_on` (by default `sessions`), store it for their source, name
    the sessions it learned from in dictionary_sessions, and recompress every current frame
    of `sessions` (see frames_only) with it at DEEP_SEAL_LEVEL. Returns its id."""
    learn_from = sessions if trained_on is None else trained_on
    samples: list[bytes | bytearray | memoryview] = []
    for sid in learn_from:
        raw = b"".join(piece for f in tier1.files(sid) for piece in tier1.read_file(f.id, f))
        samples += [raw[i:i + _SAMPLE_BYTES] for i in range(0, len(raw), _SAMPLE_BYTES)]
    trained = zstandard.train_dictionary(size, samples, threads=1)
    compressor = zstandard.ZstdCompressor(level=DEEP_SEAL_LEVEL, dict_data=trained,
                                          write_checksum=True)
    plain = zstandard.ZstdDecompressor()
    conn = tier1.conn
    with tier1.transaction("plant-dictionary"):
        source = conn.execute("SELECT source FROM sessions WHERE id = ?",
                              (learn_from[0],)).fetchone()[0]
        conn.execute("INSERT INTO dictionaries (source, trained_at, data) VALUES (?, ?, ?)",
                     (source, now, trained.as_bytes()))
        dict_id = int(conn.last_insert_rowid())
        conn.executemany("INSERT INTO dictionary_sessions VALUES (?, ?)",
                         [(dict_id, sid) for sid in learn_from])
        for sid in sessions:
            frames = list(conn.execute(
                "SELECT id, generation, stream_offset, raw_len, crc, data, dict_id FROM frames "
                "WHERE session_id = ? AND generation = (SELECT frame_gen FROM sessions "
                "WHERE id = ?)", (sid, sid)))
            assert frames, f"{sid} has no frames of its own"
            for frame_id, gen, offset, raw_len, crc, data, used in frames:
                assert used is None, f"{sid} uses a dictionary already"
                raw = plain.decompress(data, max_output_size=raw_len)
                # Deleted and inserted anew, as a seal does: the triggers keep the accounting.
                conn.execute("DELETE FROM frames WHERE id = ?", (frame_id,))
                conn.execute(
                    "INSERT INTO frames (session_id, generation, stream_offset, raw_len, crc, "
                    "level, data, dict_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (sid, gen, offset, raw_len, crc, DEEP_SEAL_LEVEL, compressor.compress(raw),
                     dict_id))
            conn.execute("UPDATE sessions SET seal_level = ? WHERE id = ?",
                         (DEEP_SEAL_LEVEL, sid))
    return dict_id


def dictionaries(tier1: Tier1) -> list[dict[str, object]]:
    """Every stored dictionary: its id, whether retired, how many frames use it, and how
    many sessions it was trained on."""
    return [{"id": i, "retired": bool(retired), "frames": frames, "trained_on": trained_on}
            for i, retired, frames, trained_on in tier1.conn.execute(
                "SELECT d.id, d.retired, (SELECT count(*) FROM frames f WHERE f.dict_id = d.id), "
                "(SELECT count(*) FROM dictionary_sessions s WHERE s.dict_id = d.id) "
                "FROM dictionaries d ORDER BY d.id")]
