"""session-memory: a lasting, compact memory of AI coding-agent sessions."""

__version__ = "0.1.0"
