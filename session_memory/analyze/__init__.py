"""Analysis: a session's raw bytes (from Tier 1 only) to its digest in Tier 2."""
