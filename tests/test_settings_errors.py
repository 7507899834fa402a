"""A settings error never echoes a secret. Every command that loads settings runs as the real `python -m bot …`
process with every secret setting given (in the environment or the .env file) and one bad setting: the
process exits with status 2 and a line that names the bad setting, and no secret value is anywhere in its
stdout or stderr. Each way a settings error arises: a cross-field check (where pydantic's error carries the
whole input, every token and key), a field validator, a type error, a constraint, an enum, values missing,
and the .env file (unparseable lines, bad values, not UTF-8)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEY_A, KEY_B = "tQ8cJpJ6bVq0h1uXg3bD9m4yK2sE7fW5aZ1nR6oL0iM=", "Yx2kV9pW4qB7nT1mC6sJ3hF8dG5aR0eL2uI9oK7zQ1w="
SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-settingsleak",
    "SLACK_SIGNING_SECRET": "0f3a9c1b7e5d2a8c4f6b0e9d1c3a5b7e",  # as Slack makes them: hex, no telltale shape
    "SLACK_CLIENT_SECRET": "5d8e2f7a1c9b3e6d0a4f8c2b7e1d9a3c",
    "SLACK_APP_TOKEN": "xapp-1-A0001-9999-settingsleak",
    "DATA_ENCRYPTION_KEYS": f"{KEY_A},{KEY_B}",
    "PYANNOTEAI_API_KEY": "sk_pyannote_settingsleak_42",
    "ENGINE_API_KEY": "engine-key-settingsleak-42",
    "ENGINE_WEBHOOK_SECRET": "webhook-secret-settingsleak-42",
}
LEAKS = [*SECRETS.values(), KEY_A, KEY_B]
TINY_GERMAN = {"TRANSCRIPT_MODEL": "tiny.en", "TRANSCRIPT_LANGUAGE": "de"}
ENGLISH_ONLY = "TRANSCRIPT_MODEL=tiny.en understands only English"


def run_bot(tmp: Path, args: list[str], env: dict[str, str], dotenv: bytes | None = None) -> str:
    """`python -m bot ARGS` in `tmp` (its .env, when given, is the only one it can read); its whole output."""
    if dotenv is not None:
        (tmp / ".env").write_bytes(dotenv)
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VAR_DIR": str(tmp / "var"), "TMPDIR": str(tmp)}
    proc = subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp, env=base | env, capture_output=True,
                          text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    return output


def assert_no_secret(output: str) -> None:
    for secret in LEAKS:
        assert secret not in output, f"{secret[:8]}… leaked: {output}"


def command_line(command: str, tmp: Path) -> list[str]:
    if command == "identify":
        (tmp / "vp.json").write_text(json.dumps([{"label": "U1", "voiceprint": "AAAA"}]))
        return ["identify", "meeting.wav", "--voiceprints", "vp.json"]
    if command == "transcribe":
        return ["transcribe", "meeting.wav"]
    return [command]


# `voiceprint` reads no settings; every other command does, first thing or right after its own arguments
@pytest.mark.parametrize("command", ["serve", "worker", "engine-server", "migrate", "rotate-keys", "identify",
                                     "transcribe"])
def test_a_cross_field_error_names_the_settings_and_no_secret(command: str, tmp_path: Path):
    output = run_bot(tmp_path, command_line(command, tmp_path), SECRETS | TINY_GERMAN)
    assert ENGLISH_ONLY in output
    assert_no_secret(output)


@pytest.mark.parametrize(("bad", "named"), [
    ({"TRANSCRIPT_LANGUAGE": "deutsch"},
     "Invalid setting TRANSCRIPT_LANGUAGE: a language code such as en, de or fr (or auto) (got 'deutsch')"),
    ({"PORT": "three thousand"}, "Invalid setting PORT: Input should be a valid integer"),
    ({"ENGINE_WORKERS": "0"}, "Invalid setting ENGINE_WORKERS: Input should be greater than or equal to 1"),
    ({"ENGINE": "cloud"}, "Invalid setting ENGINE: Input should be 'local', 'pyannoteai' or 'server' (got 'cloud')"),
    ({"PORT": SECRETS["SLACK_SIGNING_SECRET"]}, "Invalid setting PORT: Input should be a valid integer"),
])
def test_a_field_error_names_the_setting_and_no_secret(bad: dict, named: str, tmp_path: Path):
    """The last case is a secret pasted into the wrong setting: it is redacted from the quoted value."""
    output = run_bot(tmp_path, ["worker"], SECRETS | bad)
    assert named in output
    assert_no_secret(output)


def test_errors_from_the_env_file_name_the_settings_and_no_secret(tmp_path: Path):
    lines = [f"{name}={value}" for name, value in SECRETS.items()]
    lines += ['SLACK_CLIENT_ID="unterminated', "not a setting line", "JOB_MAX_ATTEMPTS=0", "MATCH_THRESHOLD=high",
              *(f"{k}={v}" for k, v in TINY_GERMAN.items())]
    output = run_bot(tmp_path, ["serve"], {}, "\n".join(lines).encode())
    assert "Invalid setting JOB_MAX_ATTEMPTS: Input should be greater than or equal to 1" in output
    assert "Invalid setting MATCH_THRESHOLD: Input should be a valid number" in output
    assert "could not parse statement starting at line" in output  # python-dotenv's own warning, names a line
    assert_no_secret(output)
    fixed = [line for line in lines if not line.startswith(("JOB_MAX", "MATCH"))]  # the cross-field check runs
    output = run_bot(tmp_path, ["worker"], {}, "\n".join(fixed).encode())
    assert ENGLISH_ONLY in output
    assert_no_secret(output)


def test_an_env_file_that_is_not_utf8_is_named_without_its_content(tmp_path: Path):
    dotenv = "\n".join(f"{k}={v}" for k, v in SECRETS.items()).encode() + b"\nTRANSCRIPT_LANGUAGE=d\xe9\n"
    output = run_bot(tmp_path, ["worker"], {}, dotenv)
    assert "Cannot read the .env file: it is not UTF-8 text" in output
    assert_no_secret(output)


def test_missing_settings_are_named_and_no_secret_is_shown(tmp_path: Path):
    given = {k: v for k, v in SECRETS.items() if k not in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")}
    output = run_bot(tmp_path, ["serve"], given)
    assert "these settings are missing: SLACK_CLIENT_ID, SLACK_SIGNING_SECRET" in output
    assert_no_secret(output)
    output = run_bot(tmp_path, ["engine-server"], {k: v for k, v in given.items() if k != "ENGINE_API_KEY"})
    assert "ENGINE_API_KEY" in output
    assert_no_secret(output)


def test_the_lines_leave_out_secret_and_url_values_even_before_redaction():
    from pydantic import ValidationError

    from bot.config import Settings, settings_problems

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, slack_bot_token="xoxb-never-quoted", **{k.lower(): v for k, v in TINY_GERMAN.items()})
    assert settings_problems(caught.value) == [
        "Invalid settings: TRANSCRIPT_MODEL=tiny.en understands only English; use base for other languages"]
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, engine_url=8100, port="x")
    assert settings_problems(caught.value) == [
        "Invalid setting PORT: Input should be a valid integer, unable to parse string as an integer (got 'x')",
        "Invalid setting ENGINE_URL: Input should be a valid string"]


@pytest.mark.parametrize("command", ["serve", "worker", "rotate-keys"])
def test_a_database_url_that_is_no_url_is_named_without_its_password(command: str, tmp_path: Path):
    given = {k: v for k, v in SECRETS.items() if k != "SLACK_CLIENT_SECRET"}  # no OAuth: serve starts
    output = run_bot(tmp_path, [command], given | {"DATABASE_URL": "postgres//voiceid:db-password-leak@db/voiceid"})
    assert "DATABASE_URL is not a database URL" in output and "Traceback" not in output
    assert_no_secret(output)
    assert "db-password-leak" not in output
