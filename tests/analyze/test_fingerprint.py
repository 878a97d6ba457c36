"""The same failure in two sessions folds to one fingerprint."""

from __future__ import annotations

from session_memory.analyze.fingerprint import fingerprint, snippet


def test_paths_numbers_and_ids_fold() -> None:
    a = snippet("Error: ENOENT: no such file or directory, open '/home/ana/app/src/x.ts' "
                "(errno -2) request 3fa9c2e1b7d4 at 0x7ffe12")
    b = snippet("Error: ENOENT: no such file or directory, open 'C:\\Users\\bo\\app\\y.ts' "
                "(errno -17) request 9c0d1e2f3a4b at 0x1")
    assert a != b
    assert fingerprint(a) == fingerprint(b) == (
        "Error: ENOENT: no such file or directory, open '<path>' (errno -<n>) request <hex> "
        "at <hex>")


def test_traceback_keeps_the_exception_line() -> None:
    text = ("Traceback (most recent call last):\n  File \"/a/b.py\", line 3, in <module>\n"
            "    main()\nKeyError: 'user_id'\n")
    assert snippet(text) == "KeyError: 'user_id'"


def test_snippet_starts_at_the_failure_and_is_short() -> None:
    text = "collected 12 items\n\n" + "tests/test_a.py ....F\n" + "FAILED test_a - boom " * 50
    cut = snippet(text)
    assert cut.startswith("FAILED test_a - boom FAILED")  # from the line naming it
    assert len(cut) == 300


def test_uuid_folds_but_words_with_digits_stay() -> None:
    assert fingerprint("session 123e4567-e89b-12d3-a456-426614174000 lost on py3 and utf8") == (
        "session <hex> lost on py3 and utf8")
