"""In-process "bot processes" for the reliability tests: each has its own scripted engine (jobs live in its
memory and die with it, like the embedded engine's) and its own owner name, over one real database and the
fake Slack Web API. A crash is a `Crash` raised between two steps; the crashed process's lease is then left to
expire, as after `kill -9`."""
from __future__ import annotations

import asyncio
import io
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from bot.engines.base import Engine
from bot.errors import JobNotFound
from bot.schema import IdentifyRequest, Job, JobStatus, VoiceprintRequest
from storage.database import Database
from testbed.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack, bot_settings
from testbed.outputs import OUTPUT
from tests.fake_engine import answer_with_labels
from tests.shared_cpu import shared_cpu

CHANNEL = "C0001"
_names = itertools.count(1)


class Crash(BaseException):
    """The process dies here: nothing after this point runs, no handler of `Exception` sees it."""


class ScriptedEngine(Engine):
    """Jobs succeed with OUTPUT after `polls` reads; `script` scripts the next submissions' outcomes:
    "ok", "fail" (a transient engine failure) or "hang" (never finishes)."""

    engine_id = name = "local"

    def __init__(self, polls: int = 2, script: list[str] | None = None):
        self.polls = polls
        self.script = list(script or [])
        self.jobs: dict[str, tuple[str, int]] = {}
        self.outputs: dict[str, dict] = {}
        self.submitted: list[str] = []
        self.upload_delay = 0.0
        self.uploading = asyncio.Event()  # set when an upload starts

    @property
    def recommended_threshold(self) -> float:
        return 60.0

    async def upload(self, path: Path, key: str | None = None) -> str:
        self.uploading.set()
        await asyncio.sleep(self.upload_delay)
        return f"media://{key}"

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        raise NotImplementedError

    async def submit_identify(self, request: IdentifyRequest) -> Job:
        job_id = uuid.uuid4().hex
        self.jobs[job_id] = (self.script.pop(0) if self.script else "ok", 0)
        self.outputs[job_id] = answer_with_labels(OUTPUT, request)
        self.submitted.append(job_id)
        return Job(job_id=job_id, status=JobStatus.running, progress=0.0)

    async def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    async def get_job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise JobNotFound(f"Job {job_id} is unknown to this engine.")
        outcome, reads = self.jobs[job_id]
        self.jobs[job_id] = (outcome, reads + 1)
        if outcome == "hang" or reads + 1 < self.polls:
            return Job(job_id=job_id, status=JobStatus.running, progress=min(0.9, (reads + 1) / self.polls))
        if outcome == "fail":
            return Job(job_id=job_id, status=JobStatus.failed,
                       output={"error": {"code": "internal", "message": "The engine ran out of memory."}})
        return Job(job_id=job_id, status=JobStatus.succeeded, output=self.outputs.get(job_id, OUTPUT), progress=1.0)


def wav(seconds: float = 3.0) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * 16000), np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class World:
    fake: FakeSlack
    db: Database
    db_url: str

    def settings(self, **overrides):
        values = {"job_poll_seconds": 0.02, "job_lease_seconds": 30, "job_max_attempts": 3,
                  "job_retry_base_seconds": 0} | overrides  # retries at once unless a test checks the backoff
        return bot_settings(self.fake, self.db_url, **values)

    async def share(self, name: str = "standup.wav") -> tuple[dict, object]:
        """A recording shared in the channel: stored by the real listener code, its progress reply posted by the
        real job-side code (as a runner's pass does); returns (event, row)."""
        from bot.services.context import Services
        from bot.services.recordings import announce, store_shared_files
        from bot.slack_api.web_api import slack_for
        from storage.recordings import find_recording
        from storage.thread import claim_announcement

        f = self.fake.add_file(name, "audio/wav", wav())
        ts = f"{int(time.time())}.{next(_names):06d}"
        event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0", "ts": ts,
                 "files": [self.fake.file_object(f)]}
        services = Services(settings=self.settings(), db=self.db, engine=ScriptedEngine())
        await store_shared_files(services, event, TEAM_ID, BOT_USER_ID)
        while (rec := await claim_announcement(self.db, 30)) is not None:
            await announce(services, rec, partial(slack_for, services))
        return event, await find_recording(self.db, TEAM_ID, f.id)

    def replies(self, event: dict) -> list:
        return self.fake.thread(CHANNEL, event["ts"])

    def chart_uploads(self, event: dict) -> list:
        return [c for c in self.fake.calls_to("files.completeUploadExternal")
                if c.done and c.params.get("thread_ts") == event["ts"]]

    async def expire_leases(self, max_attempts: int = 3) -> int:
        """What the other workers' scheduler does once a crashed worker's lease has run out."""
        from storage.models import utcnow
        from storage.recordings import requeue_expired

        return await requeue_expired(self.db, max_attempts, now=utcnow() + timedelta(hours=1))


class Proc:
    """One bot process: its own engine, its own owner name, the real pipeline; the test process's shared CPU pool
    (`tests.shared_cpu`), `speech` is its recognizer (the real one, made on first use, unless a double is given)."""

    def __init__(self, world: World, engine: ScriptedEngine | None = None, *, speech=None, **settings):
        from bot.jobs.recording_job import RecordingJob
        from bot.pools import TaskSet
        from bot.runtime import recognizer
        from bot.services.context import Services

        self.world = world
        self.engine = engine or ScriptedEngine()
        self.services = Services(settings=world.settings(**settings), db=world.db, engine=self.engine)
        self.cpu = shared_cpu()
        self.speech = speech or recognizer(self.services.settings)
        self.background = TaskSet()
        self.owner = f"proc-{next(_names)}"
        self.recording_job = RecordingJob(self.services, self.owner, cpu=self.cpu, speech=self.speech,
                                          background=self.background)

    def runner(self, **kwargs):
        """A job runner of this process (`capacity`, `owner`)."""
        from bot.jobs.scheduler import JobRunner

        return JobRunner(self.services, cpu=self.cpu, speech=self.speech, background=self.background, **kwargs)

    async def claim(self):
        from storage.recordings import claim_next

        return await claim_next(self.world.db, self.owner, self.services.settings.job_lease_seconds)

    async def run(self, rec) -> None:
        """The pipeline as the scheduler runs it: in a task of its own."""
        await asyncio.get_running_loop().create_task(self.recording_job.run(rec))

    async def claim_and_run(self):
        rec = await self.claim()
        assert rec is not None, "nothing to claim"
        await self.run(rec)
        return rec


def summary_shown(message) -> bool:
    return "Who spoke in" in str(message.blocks) and "<@U1>" in str(message.blocks)


def failure_shown(message) -> bool:
    return message.text.startswith("Could not identify speakers")


@pytest.fixture(name="world")
async def world_fixture(db: Database, db_url: str) -> AsyncIterator[World]:
    """Fake Slack with one channel whose member U1 has enrolled, over a fresh database (both backends)."""
    from storage.models import utcnow
    from storage.voiceprints import upsert_voiceprint

    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1", "U2", BOT_USER_ID]
    fake.users["U1"] = "Ann"
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id="U1", engine="local", model_id="m", voiceprint="vp",
                            consent_at=utcnow(), clip_duration=10.0)
    yield World(fake, db, db_url)
    await fake.close()
