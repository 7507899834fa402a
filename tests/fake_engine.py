"""A speaker engine double for the Slack tests that need no speech model: voiceprints made from the clip's
bytes, a canned identify output, and a gate that holds voiceprint jobs until a test releases them."""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np

from bot.engines.base import Engine
from bot.errors import JobNotFound
from bot.schema import IdentifyRequest, Job, JobStatus, VoiceprintRequest
from bot.speech import voiceprint

MODEL = "fake-model"
_SLACK_ID = re.compile(r'"([UW][A-Z0-9_]+)"')


def answer_with_labels(output: dict, request: IdentifyRequest) -> dict:
    """What an engine answers: the labels it was sent, never people. A canned output names people by Slack id
    (the test's readable way to write it); the fake puts in their place the labels of the request's voiceprints,
    people in the order they first appear standing for the voiceprints in the request's order (these tests
    enroll one voiceprint per person). Voice ID maps the labels back to the people."""
    text = json.dumps(output)
    people = list(dict.fromkeys(_SLACK_ID.findall(text)))
    labels = dict(zip(people, (v.label for v in request.voiceprints)))
    return json.loads(_SLACK_ID.sub(lambda m: json.dumps(labels.get(m.group(1), m.group(1))), text))


class FakeEngine(Engine):
    engine_id = name = "fake"

    def __init__(self, identify_output: dict | None = None):
        self.identify_output = identify_output or {}
        self.gate: asyncio.Event | None = None  # when set, voiceprint jobs wait for it
        self.voiceprint_started = asyncio.Event()
        self.identify_requests: list[IdentifyRequest] = []
        self.media: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)

    @property
    def recommended_threshold(self) -> float:
        return 60.0

    async def upload(self, path: Path, key: str | None = None) -> str:
        url = f"media://fake/{next(self._ids)}"
        self.media[url] = path.read_bytes()
        return url

    async def release(self, url: str) -> None:
        self.media.pop(url, None)

    def _job(self, output: dict) -> Job:
        job = Job(job_id=f"job-{next(self._ids)}", status=JobStatus.succeeded, output=output)
        self.jobs[job.job_id] = job
        return job

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        self.voiceprint_started.set()
        if self.gate is not None:
            await self.gate.wait()
        seed = int.from_bytes(hashlib.sha256(self.media[request.url]).digest()[:8], "little")
        vector = np.random.default_rng(seed).normal(size=16)
        return self._job({"voiceprint": voiceprint.encode(vector, MODEL), "duration": 5.0, "model": MODEL})

    async def submit_identify(self, request: IdentifyRequest) -> Job:
        self.identify_requests.append(request)
        return self._job(answer_with_labels(self.identify_output, request))

    async def get_job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise JobNotFound(f"no job {job_id}")
        return self.jobs[job_id]
