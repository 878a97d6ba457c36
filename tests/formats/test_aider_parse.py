"""Aider digests: `#### ` prompts, `> Tokens:` lines as printed, edit blocks' file names."""

from __future__ import annotations

from pathlib import Path

from session_memory.memory import Memory
from tests.analyze.helpers import digest_of, write

HISTORY = """
# aider chat started at 2025-09-01 14:00:00

> Aider v0.86.0
> Main model: anthropic/claude-sonnet-4 with diff edit format, prompt cache
> Added src/app.py to the chat

#### rename foo to bar
#### everywhere in app.py

I will rename it.

src/app.py
```python
<<<<<<< SEARCH
def foo():
=======
def bar():
>>>>>>> REPLACE
```

> Tokens: 2.3k sent, 1.1k cache write, 12k cache hit, 340 received. Cost: $0.01 message.
> Applied edit to src\\app.py

#### Add file to the chat? (Y)es/(N)o [Yes]: y

#### /run pytest -q
> Error: tests failed

#### thanks

Done, the tests pass now.

> Tokens: 1.5M sent, 85 received.
"""


def test_written_run(memory: Memory, sources: dict[str, Path]) -> None:
    write(sources["aider"], "myrepo/.aider.chat.history.md", HISTORY)
    d = digest_of(memory, "aider:myrepo#20250901T140000")
    assert d["tokens"] == {"input": 2300 + 1_500_000, "output": 340 + 85,
                           "cache_creation": 1100, "cache_read": 12000, "reasoning": 0}
    assert d["user_turns"] == 2  # the two-line prompt and "thanks"; not y, not /run
    assert d["first_prompt"] == "rename foo to bar\neverywhere in app.py"
    assert d["files_edited"] == ["src/app.py"]  # both spellings are one file
    assert d["files_read"] == ["src/app.py"]
    assert d["tool_calls"] == {"/run": 1}
    assert d["commands"] == ["pytest -q"]
    assert d["tool_errors"] == 1
    assert d["models"] == ["anthropic/claude-sonnet-4"]
    assert d["started_at"] == d["ended_at"] == "2025-09-01T14:00:00"
    assert d["duration_s"] is None
    assert d["project"] == "myrepo"
    assert d["last_assistant_message"] == "Done, the tests pass now."
    assert d["outcome"] == "success"


def test_fixture_runs(fixtures: Memory) -> None:
    ids = ["aider:mozgoslav#20260422T224047", "aider:mozgoslav#20260422T231303",
           "aider:Monochromatic#20250602T114749"]
    assert sorted(fixtures.analyze(ids)) == sorted(ids)
    run2, run3, setup = (fixtures.tier2.get_digest(i) for i in ids)
    assert run2 is not None and run3 is not None and setup is not None
    # 1.8k+1.9k+2.8k+3.3k+3.6k+4.1k+8.5k sent; 653+2.4k+2.4k+1.2k+1.7k+1.3k+1.9k received.
    assert run2["tokens"]["input"] == 26_000 and run2["tokens"]["output"] == 11_553
    assert run2["user_turns"] == 6  # two "Add file to the chat?" answers are not prompts
    assert run2["first_prompt"] == "hi"
    assert run2["models"] == ["lm_studio/qwen3.6-35b-a3b-uncensored-hauhaucs-aggressive"]
    assert run2["started_at"] == "2026-04-22T22:40:47"
    # 1.8k+5.6k+6.0k+7.4k+11k+13k+13k sent; 2.6k+958+1.2k+1.2k+4.2k+639+3.2k received.
    assert run3["tokens"]["input"] == 57_800 and run3["tokens"]["output"] == 13_997
    assert run3["user_turns"] == 4  # a 100-line prompt is one turn
    # The first run only installed a browser feature: nobody asked anything.
    assert setup["user_turns"] == 0 and setup["outcome"] == "unknown"


def test_usage_lands_at_the_run_start(memory: Memory, sources: dict[str, Path]) -> None:
    write(sources["aider"], "myrepo/.aider.chat.history.md", HISTORY)
    digest_of(memory, "aider:myrepo#20250901T140000")
    (row,) = memory.usage("day", breakdown=True)
    # A run has only its header's time (local): all its replies are spent then.
    assert (row["key"], row["input"], row["output"], row["cache_creation"],
            row["cache_read"]) == ("2025-09-01", 2300 + 1_500_000, 340 + 85, 1100, 12000)
    (model,) = row["models"]
    assert model["model"] == "anthropic/claude-sonnet-4"
    assert model["prices"]["anthropic/claude-sonnet-4"].startswith("genai-prices ")
    assert row["cost_usd"] is not None and row["cost_usd"] > 0
