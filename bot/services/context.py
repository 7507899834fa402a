"""What every listener and job needs, built once per process (settings, database, engine, bot tokens), and the
ports services and jobs talk through: Slack (`SlackPort`), this process's job runner (`LocalRunner`), speech
recognition (`Recognizer`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.config import Settings
from bot.engines.base import Engine

if TYPE_CHECKING:
    from bot.summary.blocks import SlackMessage
    from storage.database import Database


class LocalRunner(Protocol):
    """What services may ask of the job runner in their own process (`bot.jobs.scheduler.JobRunner`): listeners
    hand it in from where `bot.runtime` put it, or None when this process runs no jobs (work waits for a worker)."""

    owner: str

    @property
    def taking_work(self) -> bool: ...  # false once it is stopping: what it is handed then would wait for its lease

    def kick(self) -> None: ...

    def start_enrollment(self, job) -> None: ...

    def cancel_enrollments(self, team_id: str, user_id: str) -> int: ...


class Recognizer(Protocol):
    """Speech recognition as the transcript step uses it (`bot.transcription.recognizer.LazyTranscriptionWorker`,
    made by `bot.runtime`; tests give a double)."""

    async def transcribe(self, path, progress: Callable[[float], None]): ...

    async def close(self) -> None: ...


class SlackPort(Protocol):
    """Slack as the services use it, in plain data (`bot.slack_api.web_api.SlackWebApi` implements it over one
    workspace's Web API client, with its retries). A failed call raises `bot.errors.SlackCallError` (Slack's
    error code and HTTP status); a lost connection raises `aiohttp.ClientError` or `TimeoutError`."""

    async def channel_members(self, channel: str) -> list[str]:
        """Everyone in the channel (every page)."""

    async def permalink(self, channel: str, ts: str) -> str | None: ...

    async def post(self, channel: str, msg: SlackMessage) -> tuple[str | None, str | None]:
        """Posts `msg` (a user id as `channel`: a DM); returns the channel and ts it was posted under."""

    async def update(self, channel: str, ts: str, msg: SlackMessage) -> None: ...

    async def delete(self, channel: str, ts: str) -> None: ...

    async def upload(self, *, channel: str, thread_ts: str, content: bytes, filename: str, title: str,
                     alt: str) -> str | None:
        """Uploads a file into a thread; returns its file id."""

    async def delete_file(self, file_id: str) -> None: ...

    async def file_info(self, file_id: str) -> dict:
        """Slack's file object; a file deleted from Slack is a `MediaError` (`file_gone`)."""

    async def user_info(self, user_id: str) -> dict:
        """Slack's user object (names, profile, admin and owner flags, teams)."""

    async def show_reply(self, *, recording_id: int, channel: str, thread_ts: str, msg: SlackMessage,
                         look_first: bool, replace: bool = True) -> str:
        """Shows `msg` as the recording's one reply in the thread, at most once (`bot.slack_api.replies`)."""

    async def keep_stored(self, channel: str, mine: str, stored: str, msg: SlackMessage | None) -> str:
        """Of two replies that raced, the one stored first stays (`bot.slack_api.replies.keep_stored`)."""


class NotInstalled(Exception):
    """No usable bot token for a workspace (uninstalled, revoked, or never installed)."""


@dataclass(frozen=True)
class Services:
    """What every listener, job and command reads: built by `bot.runtime` (tests and commands build their own).
    The processes' other parts (the CPU pool, the recognizer, the job runner, background tasks) are handed only
    to those who use them."""

    settings: Settings
    db: Database
    engine: Engine

    @property
    def oauth(self) -> bool:
        return self.settings.oauth

    @property
    def socket_mode(self) -> bool:
        return self.settings.socket_mode

    @property
    def threshold(self) -> float:
        """The identify threshold: MATCH_THRESHOLD when set, else the engine's recommendation."""
        t = self.settings.match_threshold
        return self.engine.recommended_threshold if t is None else t

    @property
    def max_file_bytes(self) -> int:
        return self.settings.max_file_mb * 1024 * 1024

    async def bot_token(self, team_id: str, enterprise_id: str | None = None) -> str:
        """The workspace's bot token: the configured one, or the OAuth installation's from the database."""
        if not self.oauth and self.settings.slack_bot_token:
            return self.settings.slack_bot_token.get_secret_value()
        from storage.workspaces import get_workspace

        ws = await get_workspace(self.db, team_id, enterprise_id)
        if ws is None or not ws.bot_token or ws.uninstalled_at is not None:
            raise NotInstalled(f"Voice ID is not installed in workspace {team_id}.")
        return ws.bot_token


def kick(runner: LocalRunner | None) -> None:
    """New work is queued: this process's runner (if any) looks now rather than at its next interval."""
    if runner is not None:
        runner.kick()
