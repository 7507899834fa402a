"""What every listener and job needs, built once per process (settings, database, engine, bot tokens), and the
ports services talk through: Slack (`SlackPort`), the job runner, speech recognition."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web

from bot.config import Settings
from bot.engines.base import Engine
from bot.pools import TaskSet, exit_with_parent, stop_pool

if TYPE_CHECKING:
    from bot.summary.blocks import SlackMessage
    from storage.database import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


class LocalRunner(Protocol):
    """What services may ask of the job runner in their own process (`bot.jobs.scheduler.JobRunner`)."""

    owner: str

    def kick(self) -> None: ...

    def start_enrollment(self, job) -> None: ...

    def cancel_enrollments(self, team_id: str, user_id: str) -> int: ...


class Recognizer(Protocol):
    """Speech recognition as the transcript step uses it (`bot.transcription.recognizer.TranscriptionWorker`)."""

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


@dataclass
class Services:
    """Built by `bot.runtime` (tests build their own); listeners and jobs receive it."""

    settings: Settings
    db: Database
    engine: Engine
    tasks: TaskSet = field(default_factory=TaskSet)  # work listeners start after their ack
    runner: LocalRunner | None = None  # wired by `bot.runtime` while this process runs jobs (none: work waits for a worker)
    _speech: Recognizer | None = field(default=None, init=False, repr=False)  # made on first use (`recognizer()`)
    _cpu: ProcessPoolExecutor | None = field(default=None, init=False, repr=False)

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

    def spawn(self, coro: Coroutine, *, name: str) -> asyncio.Task:
        """Run work after an ack without losing the task to garbage collection, logging any failure."""
        return self.tasks.spawn(coro, name=name)

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU-bound work (decoding, drawing) in a one-process pool, so acks never wait behind it. A pool whose
        worker died (the OOM killer) is replaced and the work tried once more in the new one."""
        for tries_left in (1, 0):
            if self._cpu is None:
                self._cpu = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=exit_with_parent)
            pool = self._cpu
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            except BrokenProcessPool:
                if self._cpu is pool:
                    self._cpu = None
                    pool.shutdown(wait=False, cancel_futures=True)
                log.warning("the CPU pool's worker stopped unexpectedly; %s", "retrying in a new one" if tries_left
                            else "giving up on this task")
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    def recognizer(self) -> Recognizer:
        """The speech recognizer in its own worker process (the model loads once, on the first recording)."""
        if self._speech is None:
            from bot.transcription.recognizer import TranscriptionWorker

            s = self.settings
            self._speech = TranscriptionWorker(s.transcript_model.value, s.var_dir, s.transcript_language,
                                               max_duration_s=s.max_recording_hours * 3600)
        return self._speech

    async def close_speech(self) -> None:
        if self._speech is not None:
            speech, self._speech = self._speech, None
            await speech.close()

    def temp_dir(self, prefix: str):
        """A temporary directory for audio under VAR_DIR (see `bot.scratch`), deleted when the `with` ends."""
        from bot.scratch import temporary_dir

        return temporary_dir(self.settings.var_dir, prefix)

    def kick(self) -> None:
        """New work is queued: this process's runner (if any) looks now rather than at its next interval."""
        if self.runner is not None:
            self.runner.kick()

    async def drain(self) -> None:
        """Wait for background work started by listeners (used at shutdown and by tests)."""
        await self.tasks.wait()

    async def close_pool(self) -> None:
        if self._cpu is not None:
            pool, self._cpu = self._cpu, None
            await asyncio.to_thread(stop_pool, pool)


SERVICES = web.AppKey("services", Services)
