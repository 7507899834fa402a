"""One typed settings object, read from the environment or a `.env` file (12-factor).

Every setting is documented in the README's settings table; keep the two in step.
"""
from __future__ import annotations

import ipaddress
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineKind(str, Enum):
    local = "local"
    pyannoteai = "pyannoteai"
    server = "server"


class TranscriptModel(str, Enum):
    base = "base"
    tiny_en = "tiny.en"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    host: str = "0.0.0.0"
    port: int = 3000

    # Storage
    var_dir: Path = Path("./var")
    database_url: str = ""
    data_encryption_keys: SecretStr | None = None  # comma-separated Fernet keys: the first encrypts, all decrypt

    # Engine
    engine: EngineKind = EngineKind.local
    engine_workers: int = Field(default=1, ge=1, le=16)
    diarization: Literal["v3", "v2"] = "v3"  # local engine's diarization pipeline
    pyannoteai_api_key: SecretStr | None = None
    pyannoteai_api_url: str = "https://api.pyannote.ai"
    engine_url: str | None = None
    engine_api_key: SecretStr | None = None
    engine_webhook_secret: SecretStr | None = None
    engine_data_dir: Path | None = None  # engine server: jobs and media; default VAR_DIR/engine
    engine_queue_size: int = Field(default=16, ge=1)  # engine server: waiting jobs before 429
    engine_media_ttl_hours: float = Field(default=24.0, gt=0)  # engine server: unused uploads deleted after
    # Voiceprints per identify job: the engine server refuses more, the bot splits more into several jobs (pyannoteAI: 50)
    engine_max_voiceprints: int = Field(default=50, ge=1, le=1000)
    public_base_url: str | None = None
    # Engine link: TLS and plain HTTP (see SECURITY.md). Keys, voiceprints and audio cross it.
    allow_insecure_http: bool = False  # accept plain http:// URLs to other machines (and a bare engine server)
    engine_tls_cert: Path | None = None  # engine server: PEM certificate chain; with ENGINE_TLS_KEY it serves https
    engine_tls_key: Path | None = None
    engine_ca_file: Path | None = None  # bot: a PEM CA (or self-signed certificate) to trust for ENGINE_URL
    match_threshold: float | None = Field(default=None, ge=0, le=100)
    # "Is this you?": a speaker left unknown whose best confidence is at least this (and under the threshold) is
    # asked about privately, to the person it probably is; 0 turns it off (floor chosen by bench.near_matches).
    near_match_floor: float = Field(default=10.0, ge=0, le=100)
    max_recording_hours: float = Field(default=4.0, gt=0)
    max_file_mb: int = Field(default=1024, gt=0)

    # Transcript (speech recognition on the CPU; see bot/speech)
    transcript: bool = True
    transcript_language: str | None = None  # None: Whisper detects it
    transcript_model: TranscriptModel = TranscriptModel.base

    # Jobs and retention
    job_lease_seconds: int = Field(default=30, ge=1)  # renewed every third of it while a job runs
    job_deadline_base_seconds: float = Field(default=300.0, gt=0)  # engine job deadline: base + factor × media
    job_deadline_factor: float = Field(default=1.0, ge=0)
    job_max_attempts: int = Field(default=3, ge=1)
    job_retry_base_seconds: float = Field(default=15.0, ge=0)  # wait before a retry: base × 4^(n-1), capped
    job_retry_max_seconds: float = Field(default=900.0, ge=0)
    job_poll_seconds: float = Field(default=2.0, gt=0)
    # "Identify again": a recording may run again this long after its last re-run ended; a person may start one
    # this long after their last (0: no wait)
    identify_again_recording_cooldown_minutes: float = Field(default=30.0, ge=0)
    identify_again_person_cooldown_minutes: float = Field(default=5.0, ge=0)
    result_retention_days: int = Field(default=30, ge=1)
    audit_retention_days: int = Field(default=365, ge=1)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (time, level, logger, message, ids)

    # Monitoring: each process's own /metrics (and /healthz, /readyz) on a port apart from the Slack listener
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # unset: no metrics listener
    metrics_host: str = "127.0.0.1"
    metrics_token: SecretStr | None = None  # when set, a scrape sends it as `Authorization: Bearer …`

    @field_validator("transcript_language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        v = (v or "").strip().lower()
        if v in ("", "auto"):
            return None
        if not v.isascii() or not v.isalpha() or not 2 <= len(v) <= 3:
            raise ValueError("a language code such as en, de or fr (or auto)")
        return v

    @model_validator(mode="after")
    def _english_only(self) -> Settings:
        if self.transcript_model is TranscriptModel.tiny_en and self.transcript_language not in (None, "en"):
            raise ValueError("TRANSCRIPT_MODEL=tiny.en understands only English; use base for other languages")
        return self

    @model_validator(mode="after")
    def _engine_link(self) -> Settings:
        problems = [p for name, url in (("ENGINE_URL", self.engine_url), ("PUBLIC_BASE_URL", self.public_base_url),
                                        ("PYANNOTEAI_API_URL", self.pyannoteai_api_url),
                                        ("SLACK_API_URL", self.slack_api_url))
                    if url and (p := url_problem(name, url, allow_insecure=self.allow_insecure_http))]
        if (self.engine_tls_cert is None) != (self.engine_tls_key is None):
            problems.append("ENGINE_TLS_CERT and ENGINE_TLS_KEY go together: set both (or neither)")
        problems += [f"{name} names no readable file" for name, path in (
            ("ENGINE_TLS_CERT", self.engine_tls_cert), ("ENGINE_TLS_KEY", self.engine_tls_key),
            ("ENGINE_CA_FILE", self.engine_ca_file)) if path is not None and not path.is_file()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _metrics_exposure(self) -> Settings:
        if self.metrics_port and not is_loopback(self.metrics_host) and not self.metrics_token:
            raise ValueError("METRICS_HOST beyond this machine needs METRICS_TOKEN: the metrics name workspaces and "
                             "show the queue to whoever can reach the port")
        return self

    @property
    def oauth(self) -> bool:
        return bool(self.slack_client_id and self.slack_client_secret)

    @property
    def socket_mode(self) -> bool:
        """Events arrive over Slack's WebSocket (SLACK_APP_TOKEN, single workspace), not at /slack/events."""
        return bool(self.slack_app_token) and not self.oauth

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or a SQLite file under VAR_DIR by default."""
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'voiceid.db'}"

    def missing_slack_settings(self) -> list[str]:
        """Names of the Slack variables still needed to serve; empty when the bot can start."""
        if self.slack_client_id or self.slack_client_secret:
            needed = {"SLACK_CLIENT_ID": self.slack_client_id, "SLACK_CLIENT_SECRET": self.slack_client_secret,
                      "SLACK_SIGNING_SECRET": self.slack_signing_secret}
        elif self.slack_app_token:
            needed = {"SLACK_BOT_TOKEN": self.slack_bot_token}
        else:
            needed = {"SLACK_BOT_TOKEN": self.slack_bot_token, "SLACK_SIGNING_SECRET": self.slack_signing_secret}
        return [name for name, value in needed.items() if not value]

    def missing_engine_settings(self) -> list[str]:
        if self.engine is EngineKind.pyannoteai and not self.pyannoteai_api_key:
            return ["PYANNOTEAI_API_KEY"]
        if self.engine is EngineKind.server:
            return [n for n, v in {"ENGINE_URL": self.engine_url, "ENGINE_API_KEY": self.engine_api_key}.items()
                    if not v]
        return []


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine (localhost, 127.0.0.0/8, ::1): traffic to it never crosses a network.
    Only `localhost` itself by name: `*.localhost` may be looked up in DNS, and answered with any address."""
    host = (host or "").strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(name: str, url: str, *, allow_insecure: bool = False) -> str | None:
    """Why `url` (setting `name`) may not carry keys, voiceprints or audio, or None: https, or http to this machine.

    Never repeats the URL, which may hold credentials or a one-time token."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name} must be an https:// URL"
    if parts.scheme == "https" or is_loopback(parts.hostname) or allow_insecure:
        return None
    return (f"{name} uses plain http:// to another machine, so keys, voiceprints and audio would cross the network "
            "readable and alterable: use https:// (see README, Engine link), or set ALLOW_INSECURE_HTTP=true")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class SettingsError(SystemExit):
    """Raised (as a clean exit with status 2) when the environment holds an invalid setting."""


def load_settings() -> Settings:
    """Settings validated at start; an invalid value ends the program with one clear line per problem.

    This runs before logging knows the secrets, so the lines never quote a secret setting's value: pydantic
    puts the whole input (every token and key) into a cross-field error, and any field's error quotes its
    input. Only a non-secret, non-URL value is quoted, and every secret found in the environment, the .env
    file or the input is redacted from the lines all the same."""
    import sys

    from pydantic import ValidationError
    from pydantic_settings import SettingsError as SourceError

    from bot.logs import Redactor

    try:
        return get_settings()
    except (ValidationError, SourceError, UnicodeDecodeError, OSError) as exc:
        redactor = Redactor(_secrets_given(exc))
        print("\n".join(redactor.redact(line) for line in settings_problems(exc)), file=sys.stderr)
    raise SettingsError(2) from None


def _secret_names() -> set[str]:
    return {name for name, field in Settings.model_fields.items()
            if field.annotation is SecretStr or SecretStr in get_args(field.annotation)}


def settings_problems(exc: Exception) -> list[str]:
    """One line per problem, naming the setting; its value only when harmless (not a secret, not a URL)."""
    from pydantic import ValidationError

    if isinstance(exc, UnicodeDecodeError):
        return [f"Cannot read the .env file: it is not UTF-8 text (byte {exc.start})."]
    if isinstance(exc, OSError):
        return [f"Cannot read the .env file: {exc.strerror or type(exc).__name__}."]
    if not isinstance(exc, ValidationError):  # a value its source could not parse; what it chains may quote it
        return [f"Invalid settings: {str(exc).splitlines()[0]}"]
    secrets = _secret_names()
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if not loc:  # a cross-field check: its message names the settings involved
            lines.append(f"Invalid settings: {message}")
            continue
        value = err.get("input")
        quoted = loc[0] not in secrets and not loc[0].endswith("_url") and isinstance(value, str | int | float)
        lines.append(f"Invalid setting {'_'.join(loc).upper()}: {message}"
                     + (f" (got {str(value)[:80]!r})" if quoted else ""))
    return lines


def _secrets_given(exc: Exception) -> list[str]:
    """The values of the secret settings wherever they were given: the environment, .env, an error's input."""
    import os

    secrets = _secret_names()
    values = [v for k, v in os.environ.items() if k.lower() in secrets]
    try:
        from dotenv import dotenv_values

        values += [v for k, v in dotenv_values(".env", encoding="utf-8").items() if k.lower() in secrets and v]
    except (OSError, UnicodeDecodeError):
        pass
    for err in getattr(exc, "errors", list)():
        if isinstance(err.get("input"), dict):
            values += [str(v) for k, v in err["input"].items() if k in secrets and v]
    return [part.strip() for v in values for part in [v, *str(v).split(",")] if part.strip()]


SLACK_SETUP_HELP = """\
Voice ID cannot start: these settings are missing: {missing}.

Set them in the environment or in a .env file next to the Makefile. To get them:
  1. Open https://api.slack.com/apps, choose "Create New App" → "From an app manifest",
     pick your workspace and paste manifest.yml from this repository
     (manifest.socket-mode.yml for local development without a public URL).
  2. "Basic Information" → "App Credentials": copy the Signing Secret into SLACK_SIGNING_SECRET.
  3. "Install App" → install to your workspace, then copy the "Bot User OAuth Token" (xoxb-…)
     into SLACK_BOT_TOKEN.
  4. For Socket Mode: "Basic Information" → "App-Level Tokens" → generate one with the
     connections:write scope and put it (xapp-…) into SLACK_APP_TOKEN.
  For several workspaces (OAuth) set SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and SLACK_SIGNING_SECRET instead.
See the settings table in README.md for every option."""
