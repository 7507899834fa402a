"""Metrics, readiness and JSON logs in one process (the real processes: test_monitoring_processes.py): the engine
server's queue gauges while a job is held and another waits, a lease takeover and a retry counted by the real
job runner against the fake Slack, readiness of a database that is not migrated, the METRICS_HOST rule, and
JSON log lines with the job's context and an unforgeable ref."""
from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from bot.metrics import BOT
from storage.database import Database
from testbed.fake_slack import TEAM_ID, FakeSlack, bot_settings
from tests.fake_engine import FakeEngine
from tests.process_support import free_port
from tests.shared_cpu import shared_cpu

KEY = "engine-server-test-key-0123"


def bot_value(name: str, **labels: str) -> float:
    return BOT.get_sample_value(name, labels) or 0.0


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_engine_server_shows_a_running_job_a_waiting_one_and_a_refusal(tmp_path: Path):
    from bot.engine_server import monitoring
    from bot.engine_server.app import ENGINE_SERVER, ServerLimits, create_app
    from bot.engines.http import HTTPEngine, RetryPolicy
    from bot.errors import RateLimited
    from bot.metrics import metrics_listener
    from bot.schema import JobStatus, VoiceprintRequest

    engine = FakeEngine()
    engine.gate = asyncio.Event()  # voiceprint jobs wait inside the engine until the test opens it
    app = create_app(engine, KEY, tmp_path / "data", limits=ServerLimits(queue_size=1), workers=1)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = HTTPEngine(str(server.make_url("")), KEY, engine_id="server", name="the engine server",
                        recommended_threshold=75, retry=RetryPolicy(attempts=1, base_delay_s=0))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = app[ENGINE_SERVER]
    try:
        async with metrics_listener("127.0.0.1", port, token=None, registry=monitoring.SERVER,
                                    collect=lambda: monitoring.collect(srv), ready=lambda: monitoring.readiness(srv)):
            before = await scrape(url)
            clip = tmp_path / "clip.wav"
            clip.write_bytes(b"RIFF" + bytes(400))
            media = await client.upload(clip)
            first = await client.submit_voiceprint(VoiceprintRequest(url=media))
            await asyncio.wait_for(engine.voiceprint_started.wait(), 30)
            second = await client.submit_voiceprint(VoiceprintRequest(url=media))
            with pytest.raises(RateLimited):
                await client.submit_voiceprint(VoiceprintRequest(url=media))
            during = await scrape(url)
            assert during[("voiceid_engine_server_running", ())] == 1
            assert during[("voiceid_engine_server_queued", ())] == 1
            rejected = ("voiceid_engine_server_rejected_total", ())
            assert during[rejected] == before[rejected] + 1
            async with aiohttp.ClientSession() as http, http.get(str(server.make_url("/readyz"))) as resp:
                assert resp.status == 200 and await resp.json() == {"ok": True, "engine": "ok", "data": "ok"}
            engine.gate.set()
            for job in (first, second):
                assert (await client.wait(job.job_id, poll=0.05, timeout=30)).status is JobStatus.succeeded
            after = await scrape(url)
            done = ("voiceid_engine_server_jobs_total", (("kind", "voiceprint"), ("status", "succeeded")))
            assert after[done] == before.get(done, 0) + 2
            assert after[("voiceid_engine_server_running", ())] == 0
            assert after[("voiceid_engine_server_queued", ())] == 0
    finally:
        await client.close()
        await server.close()


@pytest.fixture
async def runner_world(tmp_path: Path, sqlite_db: Database):
    from bot.jobs.scheduler import JobRunner
    from bot.pools import TaskSet
    from bot.runtime import recognizer
    from bot.services.context import Services

    fake = FakeSlack()
    await fake.start()
    settings = bot_settings(fake, str(sqlite_db.url), job_max_attempts=1, var_dir=tmp_path / "var")
    runner = JobRunner(Services(settings=settings, db=sqlite_db, engine=FakeEngine()), cpu=shared_cpu(),
                       speech=recognizer(settings), background=TaskSet(), owner="here:2:alive")
    try:
        yield fake, sqlite_db, runner
    finally:
        await runner.stop()  # its progress replies too: none is left running past the test
        await fake.close()


async def queue_one(db: Database, file_id: str):
    from storage.recordings import enqueue_recording

    rec, _ = await enqueue_recording(db, team_id=TEAM_ID, channel_id="C0001", file_id=file_id, file_name="m.wav",
                                     uploader_id="U0", message_ts="1700000000.000100", engine="fake")
    return rec


async def run_once(runner) -> None:
    """One claim pass of the real job runner, and the jobs it started, to their end."""
    await runner.tick()
    await asyncio.gather(*runner.active)


async def test_a_takeover_and_the_failure_it_shows_are_counted(runner_world):
    from storage.leases import expire_leases
    from storage.models import Recording
    from storage.recordings import claim_next, get_recording

    fake, db, runner = runner_world
    rec = await queue_one(db, "F1")
    assert (await claim_next(db, "elsewhere:1:crashed", 30)).id == rec.id  # its only attempt, then a crash
    await expire_leases(db, [Recording], ["elsewhere:1:crashed"])
    takeovers = bot_value("voiceid_lease_takeovers_total", job="recording")
    failures = bot_value("voiceid_job_failures_total", job="recording", code="lease_expired")
    await run_once(runner)
    assert (await get_recording(db, rec.id)).notified_at is not None
    assert fake.calls_to("chat.postMessage"), "the failure was shown in the thread"
    assert bot_value("voiceid_lease_takeovers_total", job="recording") == takeovers + 1
    assert bot_value("voiceid_job_failures_total", job="recording", code="lease_expired") == failures + 1


async def test_a_retry_and_slack_5xx_answers_are_counted(runner_world):
    from storage.recordings import get_recording

    fake, db, runner = runner_world
    runner.services.settings.job_max_attempts = 3
    rec = await queue_one(db, "F2")
    fake.server_errors["files.info"] = 3  # the first try and both of the client's retries
    retries = bot_value("voiceid_job_retries_total", job="recording", code="slack_error")
    errors = bot_value("voiceid_slack_api_errors_total", method="files.info", status="5xx")
    await run_once(runner)
    assert (await get_recording(db, rec.id)).state.value == "queued"
    assert bot_value("voiceid_job_retries_total", job="recording", code="slack_error") == retries + 1
    assert bot_value("voiceid_slack_api_errors_total", method="files.info", status="5xx") == errors + 3


async def test_readiness_tells_a_database_that_is_not_migrated(tmp_path: Path):
    from bot.services.monitoring import database_state
    from storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'voiceid.db'}"
    db = Database(url)
    try:
        assert await database_state(db) == "not migrated"
        await upgrade(url)
        assert await database_state(db) == "ok"
    finally:
        await db.dispose()


async def test_a_flood_of_readiness_probes_costs_one_check_per_interval():
    """`/readyz` answers anyone on the Slack listener: 60 probes (40 at once) within the interval run the database
    and engine check once; the next interval runs it once more, and a change shows from then on."""
    from aiohttp import web

    from bot.metrics import probe_routes
    from bot.services.monitoring import Reused

    checks, now, ready = [], [0.0], [True]

    async def check():
        checks.append(now[0])
        await asyncio.sleep(0.05)  # a database query and an engine call take a moment; probes pile up meanwhile
        return ready[0], {"database": "ok", "engine": "ok" if ready[0] else "engine_unavailable"}

    app = web.Application()
    app.add_routes(probe_routes(Reused(check, reuse=2.0, clock=lambda: now[0])))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async def probe() -> int:
                async with http.get(server.make_url("/readyz")) as resp:
                    return resp.status

            assert await asyncio.gather(*(probe() for _ in range(40))) == [200] * 40
            now[0], ready[0] = 1.9, False
            assert [await probe() for _ in range(20)] == [200] * 20
            assert checks == [0.0]
            now[0] = 2.0
            assert [await probe() for _ in range(5)] == [503] * 5
            assert checks == [0.0, 2.0]
    finally:
        await server.close()


def test_metrics_beyond_this_machine_need_a_token():
    from bot.config import Settings

    with pytest.raises(ValidationError, match="METRICS_TOKEN"):
        Settings(_env_file=None, metrics_port=9100, metrics_host="0.0.0.0")
    assert Settings(_env_file=None, metrics_port=9100, metrics_host="0.0.0.0", metrics_token="t" * 20).metrics_port
    assert Settings(_env_file=None, metrics_port=9100).metrics_host == "127.0.0.1"


def test_json_lines_carry_the_job_and_an_unforgeable_ref_and_no_secret():
    from bot.logs import JsonFormatter, Redactor, log_context

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor(["configured-secret-123"]))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("voiceid.test.json")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    with log_context(recording_id=7, team=TEAM_ID):
        logger.info("recording %s: %s failed [ref %s]", 7, "evil [ref DEAD00]\n2024 ERROR forged\u2028é", "ABC123")
        logger.info("file %s shared", "x [ref BEEF00]")
    try:
        raise RuntimeError("token xoxb-1-2-abcdef and configured-secret-123\nnot a record")
    except RuntimeError:
        logger.exception("boom %s", "Bearer abc.def")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(line.isascii() for line in lines)
    failed, shared, boom = map(json.loads, lines)
    assert failed["ref"] == "ABC123" and failed["recording_id"] == 7 and failed["team"] == TEAM_ID
    assert failed["level"] == "INFO" and failed["logger"] == "voiceid.test.json" and failed["time"].endswith("Z")
    assert "forged" in failed["message"] and "é" in failed["message"]
    assert "ref" not in shared  # a name holding "[ref …]" makes no ref
    assert "recording_id" not in boom  # the context ended with its block
    assert "RuntimeError" in boom["exception"]
    for secret in ("xoxb-1-2-abcdef", "configured-secret-123", "abc.def"):
        assert secret not in stream.getvalue()
