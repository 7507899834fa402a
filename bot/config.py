"""One typed settings object, read from the environment or a `.env` file (12-factor).

Every setting is documented in the README's settings table; keep the two in step.
"""
from __future__ import annotations

from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    diarization: Literal["v3", "v2", "v1"] = "v3"  # local engine: segmentation pipeline (v3, v2) or VAD windows (v1)
    pyannoteai_api_key: SecretStr | None = None
    pyannoteai_api_url: str = "https://api.pyannote.ai"
    engine_url: str | None = None
    engine_api_key: SecretStr | None = None
    engine_webhook_secret: SecretStr | None = None
    engine_data_dir: Path | None = None  # engine server: jobs and media; default VAR_DIR/engine
    engine_queue_size: int = Field(default=16, ge=1)  # engine server: waiting jobs before 429
    engine_media_ttl_hours: float = Field(default=24.0, gt=0)  # engine server: unused uploads deleted after
    public_base_url: str | None = None
    match_threshold: float | None = Field(default=None, ge=0, le=100)
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
    result_retention_days: int = Field(default=30, ge=1)
    audit_retention_days: int = Field(default=365, ge=1)
    log_level: str = "INFO"

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class SettingsError(SystemExit):
    """Raised (as a clean exit with status 2) when the environment holds an invalid setting."""


def load_settings() -> Settings:
    """Settings validated at start; an invalid value ends the program with one clear line per problem."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        import sys

        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper()
            print(f"Invalid setting {name}: {err['msg']} (got {err.get('input')!r})", file=sys.stderr)
        raise SettingsError(2) from None


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
