"""Shared pieces for the engine-server and HTTP-client tests: real speech files and a running server."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from bot.engine_server.app import ServerLimits, create_app
from bot.engines.base import Engine
from bot.engines.http import HTTPEngine, RetryPolicy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech"
API_KEY = "test-engine-key-0123456789"
SR = 16000

needs_speech = pytest.mark.speech  # tests/conftest.py skips it without ../shared/data (fails under CI)


def utterance(reader: str, index: int) -> Path:
    return sorted((DATA / reader).glob("*.flac"))[index]


def write_meeting(path: Path, turns: list[tuple[str, int]], pause_s: float = 0.6) -> Path:
    """Concatenate whole LibriSpeech utterances with pauses: a small meeting with an exact turn order."""
    import soundfile as sf

    parts = []
    for reader, index in turns:
        samples, sr = sf.read(str(utterance(reader, index)), dtype="float32")
        assert sr == SR
        parts += [samples, np.zeros(int(pause_s * SR), dtype=np.float32)]
    sf.write(str(path), np.concatenate(parts), SR, subtype="PCM_16")
    return path


@asynccontextmanager
async def engine_server(engine: Engine, data_dir: Path, *, limits: ServerLimits | None = None,
                        workers: int = 1, webhook_secret: str | None = None, transcription=None):
    """A real engine server on 127.0.0.1 (random port) around `engine`; yields the TestServer."""
    app = create_app(engine, API_KEY, data_dir, limits=limits, workers=workers, webhook_secret=webhook_secret,
                     transcription=transcription)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def client_for(server: TestServer, *, api_key: str = API_KEY, attempts: int = 3) -> HTTPEngine:
    return HTTPEngine(str(server.make_url("")), api_key, engine_id="server", name="the engine server", recommended_threshold=50.0,
                      key_setting="ENGINE_API_KEY", retry=RetryPolicy(attempts=attempts, base_delay_s=0.05))


class GatedEngine(Engine):
    """A real engine whose jobs wait at submission until the test sets `gate`: "still running" by construction,
    not by hoping the real job is slower than the test."""

    def __init__(self, engine: Engine):
        self.engine, self.engine_id, self.name, self.gate = engine, engine.engine_id, engine.name, asyncio.Event()

    @property
    def recommended_threshold(self) -> float:
        return self.engine.recommended_threshold

    async def upload(self, path: Path, key: str | None = None) -> str:
        return await self.engine.upload(path, key)

    async def submit_voiceprint(self, request):
        await self.gate.wait()
        return await self.engine.submit_voiceprint(request)

    async def submit_identify(self, request):
        await self.gate.wait()
        return await self.engine.submit_identify(request)

    async def get_job(self, job_id: str):
        return await self.engine.get_job(job_id)

    async def release(self, url: str) -> None:
        await self.engine.release(url)


class WebhookReceiver:
    """A bot's webhook endpoint on 127.0.0.1: `url` to give the engine, `received` jobs, `arrived` set on the first."""

    def __init__(self, server: TestServer, received: list, arrived: asyncio.Event):
        self.url, self.received, self.arrived = str(server.make_url("/engine/webhook")), received, arrived


@asynccontextmanager
async def webhook_receiver(secret: str):
    from aiohttp import web

    from bot.engines.webhooks import webhook_routes

    received: list = []
    arrived = asyncio.Event()

    async def on_job(job) -> None:
        received.append(job)
        arrived.set()

    app = web.Application()
    app.add_routes(webhook_routes(secret, on_job))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield WebhookReceiver(server, received, arrived)
    finally:
        await server.close()
