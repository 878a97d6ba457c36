"""Every kind of secret is redacted; ordinary code is left alone."""

from __future__ import annotations

import pytest

from session_memory.analyze.redact import redact, redact_all

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GHP = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GH_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
OPENAI = "sk-proj-" + "Ab3dEf6hIj9lMn0pQr2tUv4xYz"
ANTHROPIC = "sk-ant-api03-" + "Ab3dEf6hIj9lMn0pQr2tUv4xYz_-AA"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." "eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c2\nabcd\n"
       "-----END RSA PRIVATE KEY-----")


@pytest.mark.parametrize(("text", "kind"), [
    (f"aws_access_key_id = {AWS}", "aws_access_key"),
    (f"token {GHP} here", "github_token"),
    (f"token {GH_PAT}", "github_token"),
    (f"key={OPENAI}", "openai_key"),
    (f"using {ANTHROPIC} now", "anthropic_key"),
    (f"slack {SLACK}", "slack_token"),
    (f"Authorization: Bearer {JWT}", "jwt"),
    (f"key:\n{PEM}\ndone", "private_key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt (cut off)", "private_key"),
])
def test_each_kind(text: str, kind: str) -> None:
    out = redact(text)
    assert f"[REDACTED:{kind}]" in out
    for secret in (AWS, GHP, GH_PAT, OPENAI, ANTHROPIC, SLACK, JWT, "MIIEpAIBAAKCAQEA1c2",
                   "b3BlbnNzaC1rZXkt"):
        assert secret not in out


def test_url_password_keeps_the_rest() -> None:
    assert (redact("postgres://app:s3cr3t-pw@db.internal:5432/main")
            == "postgres://app:[REDACTED:url_password]@db.internal:5432/main")


@pytest.mark.parametrize("text", [
    "export GITHUB_TOKEN=abc123def456ghi",
    "STRIPE_SECRET_KEY='rk_live_51Habcdefghijklmn'",
    '"DEPLOY_KEY": "8f14e45fceea167a5a36dedd4bea2543"',
    "SOME_API_KEY = Zm9vYmFyYmF6cXV4cXV1eA==",
])
def test_token_and_key_assignments(text: str) -> None:
    out = redact(text)
    assert "[REDACTED:" in out
    assert out.split("[REDACTED:")[0].rstrip("\"' =:").endswith(("TOKEN", "KEY"))


@pytest.mark.parametrize("text", [
    "def get_key(self, key: str) -> str:\n    return self.cache[key]",
    "PRIMARY_KEY = 'id'\nSORT_KEY=created_at\nMAX_TOKEN = 4096",
    "API_KEY=$OPENAI_API_KEY python run.py",
    "task-force risk-assessment desk-top ask-me-anything-about-this-thing",
    "git checkout -b feature/sk-learn-upgrade",
    "https://example.com/path?x=1 and ssh://git@github.com/org/repo.git",
    "hash = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
    "const token = await getToken(); // ghp_ prefix documented",
    "eyJ is how base64 JSON starts",
])
def test_no_false_hits_on_ordinary_code(text: str) -> None:
    assert redact(text) == text


def test_redact_all_walks_nested_values() -> None:
    value = {"commands": [f"curl -H 'x: {GHP}'"], "n": 3, "errors": [{"snippet": JWT}],
             f"{AWS}": None}
    out = redact_all(value)
    assert out == {"commands": ["curl -H 'x: [REDACTED:github_token]'"], "n": 3,
                   "errors": [{"snippet": "[REDACTED:jwt]"}], "[REDACTED:aws_access_key]": None}
