"""Metrics, readiness and JSON logs of real processes (issue 22 items 1-3): `python -m bot serve` (ENGINE=server,
LOG_FORMAT=json, METRICS_PORT with a token) on a PostgreSQL of its own, and `python -m bot engine-server` with its
own metrics listener. Recordings and an enrollment go through the bot's real HTTP endpoint against the fake Slack
Web API; the test scrapes both processes during and after the jobs, stops PostgreSQL under the bot, and reads the
logs back."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from ci import in_ci
from prometheus_client.parser import text_string_to_metric_families

from storage.crypto import new_key
from storage.database import Database
from testbed.fake_slack import BOT_USER_ID, SIGNING_SECRET, TEAM_ID, FakeSlack
from testbed.postgres import PostgresServer, PostgresUnavailable
from tests.process_support import (
    ENGINE_API_KEY,
    RemoteBot,
    child_env,
    free_port,
    start,
    stop,
    wait_engine_ready,
)
from tests.slack_e2e_support import (
    concat,
    dms,
    enrollment_clip,
    submit_enrollment,
    wait_status,
    wav_bytes,
)

CHANNEL = "C0001"
METRICS_TOKEN = "metrics-token-5f1c0e9a7b"

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.postgres,
    pytest.mark.speech,
]


@dataclass
class World:
    pg: PostgresServer
    fake: FakeSlack
    db: Database
    key: str
    tmp: Path
    bot: RemoteBot
    serve: subprocess.Popen
    engine: subprocess.Popen
    base: str  # serve's Slack listener
    metrics: str  # serve's metrics listener
    engine_url: str
    engine_metrics: str


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics page: (name, sorted labels) → value."""
    status, text = await get(f"{url}/metrics", METRICS_TOKEN)
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def until(check, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)
    return result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    try:
        pg = PostgresServer().start()  # its own server: a test stops it under the bot
    except PostgresUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests, but: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    tmp = tmp_path_factory.mktemp("monitoring")
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = ["U1688", "U1998", BOT_USER_ID]
    key = new_key()
    url = pg.create_database("voiceid")
    db = Database(url, keys=[key])
    port, metrics_port, engine_port, engine_metrics_port = (free_port() for _ in range(4))
    engine_url = f"http://127.0.0.1:{engine_port}"
    (tmp / "engine").mkdir()
    (tmp / "serve").mkdir()
    engine = start(["engine-server", "--host", "127.0.0.1", "--port", str(engine_port)],
                   child_env(tmp / "engine", ENGINE_WORKERS="1", LOG_FORMAT="json", METRICS_PORT=str(engine_metrics_port),
                             METRICS_TOKEN=METRICS_TOKEN), tmp / "engine" / "engine.log")
    serve = start(["serve"], child_env(
        tmp / "serve", SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=fake.api_url,
        DATABASE_URL=url, DATA_ENCRYPTION_KEYS=key, ENGINE="server", ENGINE_URL=engine_url, HOST="127.0.0.1",
        PORT=str(port), METRICS_PORT=str(metrics_port), METRICS_TOKEN=METRICS_TOKEN, LOG_FORMAT="json",
        JOB_POLL_SECONDS="0.5", TRANSCRIPT="on", TRANSCRIPT_MODEL="tiny.en"), tmp / "serve" / "serve.log")
    w = World(pg=pg, fake=fake, db=db, key=key, tmp=tmp, bot=RemoteBot(fake, f"http://127.0.0.1:{port}"),
              serve=serve, engine=engine, base=f"http://127.0.0.1:{port}", metrics=f"http://127.0.0.1:{metrics_port}",
              engine_url=engine_url, engine_metrics=f"http://127.0.0.1:{engine_metrics_port}")
    try:
        await wait_engine_ready(engine_url, engine)

        async def serving():
            assert serve.poll() is None, (tmp / "serve" / "serve.log").read_text()[-3000:]
            try:
                return (await get(f"{w.base}/healthz"))[0] == 200
            except aiohttp.ClientError:
                return False

        await until(serving, "serve to listen", timeout=120)
        yield w
    finally:
        for proc in (serve, engine):
            stop(proc)
        await db.dispose()
        await fake.close()
        pg.stop()


def serve_log(w: World) -> str:
    return (w.tmp / "serve" / "serve.log").read_text()


async def test_probes_answer_and_metrics_stay_off_the_public_listener(world: World):
    w = world
    status, body = await get(f"{w.base}/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}  # no recording counts for anyone on the internet
    status, body = await get(f"{w.base}/readyz")
    assert status == 200 and json.loads(body) == {"ok": True, "database": "ok", "engine": "ok"}, body
    assert (await get(f"{w.base}/metrics", METRICS_TOKEN))[0] == 404  # not on the Slack listener
    for url in (w.metrics, w.engine_metrics):
        assert (await get(f"{url}/metrics"))[0] == 401
        assert (await get(f"{url}/metrics", "wrong-token"))[0] == 401
        assert (await get(f"{url}/readyz"))[0] == 200  # the probes need no token
    for path in ("/healthz", "/readyz"):  # the engine server's own listener: no API key for a load balancer
        status, body = await get(f"{w.engine_url}{path}")
        assert status == 200 and json.loads(body)["ok"] is True, body
    assert (await get(f"{w.engine_url}/v1/test"))[0] == 401  # everything else still needs the key
    samples = await scrape(w.metrics)
    assert value(samples, "voiceid_database_up") == 1
    assert value(samples, "voiceid_recordings", state="queued") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    engine = await scrape(w.engine_metrics)
    assert value(engine, "voiceid_engine_server_running") == 0 and value(engine, "voiceid_engine_server_workers") == 1
    assert value(engine, "voiceid_upload_to_summary_seconds_count") is None  # each process serves its own


async def test_counters_move_during_real_jobs(world: World):
    w, fake = world, world.fake
    before = await scrape(w.metrics)
    clip = enrollment_clip([("1688", 0), ("1688", 1)])
    await submit_enrollment(w.bot, fake, "U1688", clip)
    dm = (await fake.wait_for(lambda: dms(fake, "U1688"), timeout=180, what="the enrollment DM"))[0]
    assert "voiceprint is saved" in dm

    gate = fake.gate("conversations.members")  # holds the first recording's job before the engine
    files = [fake.add_file(f"meeting-{i}.wav", "audio/wav",
                           wav_bytes(concat([(r, i) for r in ("1688", "1998")], pause=0.4))) for i in (2, 3)]
    for n, f in enumerate(files):
        assert (await w.bot.event(w.bot.share_event(f, channel=CHANNEL), event_id=f"Ev{n}")).status == 200

    async def one_running_one_queued():
        during = await scrape(w.metrics)
        return during if (value(during, "voiceid_recordings", state="running") == 1
                          and value(during, "voiceid_queue_depth", team=TEAM_ID) == 1) else None

    during = await until(one_running_one_queued, "one recording held running and one queued")
    assert value(during, "voiceid_queue_oldest_age_seconds", team=TEAM_ID) >= 0
    assert value(during, "voiceid_voiceprints", engine="server") == 1
    assert value(during, "voiceid_enrollments_total", outcome="saved") == 1 + value(before, "voiceid_enrollments_total",
                                                                                  outcome="saved")
    fake.rate_limit["chat.update"] = 1  # Slack answers the next edit 429 once
    gate.open()
    for f in files:
        done = await wait_status(fake, w.db, f.id, {"posted", "failed"}, timeout=300)
        assert done.state.value == "posted", done.error_message

    junk = fake.add_file("notes.wav", "audio/wav", b"RIFF not really a wave file at all" * 50)
    assert (await w.bot.event(w.bot.share_event(junk, channel=CHANNEL), event_id="EvJunk")).status == 200
    failed = await wait_status(fake, w.db, junk.id, {"posted", "failed"}, timeout=120)
    assert failed.state.value == "failed"
    await until(lambda: recording_notified(w.db, junk.id), "the failure shown")

    after = await scrape(w.metrics)
    assert value(after, "voiceid_recordings", state="posted") == 2
    assert value(after, "voiceid_recordings", state="failed") == 1
    assert value(after, "voiceid_queue_depth", team=TEAM_ID) is None  # nothing waits: no series
    assert value(after, "voiceid_upload_to_summary_seconds_count") == 2
    assert value(after, "voiceid_upload_to_transcript_seconds_count") == 2
    assert value(after, "voiceid_engine_job_seconds_count", engine="server", kind="identify") == 3  # junk's too
    assert value(after, "voiceid_engine_job_rtf_count", engine="server", kind="identify") == 2  # succeeded only
    assert value(after, "voiceid_slack_api_errors_total", method="chat.update", status="429") >= 1
    assert value(after, "voiceid_job_failures_total", job="recording", code=failed.error_code) == 1
    engine = await scrape(w.engine_metrics)
    assert value(engine, "voiceid_engine_server_jobs_total", kind="identify", status="succeeded") == 2
    assert value(engine, "voiceid_engine_server_jobs_total", kind="identify", status="failed") == 1
    assert value(engine, "voiceid_engine_server_jobs_total", kind="voiceprint", status="succeeded") == 1
    assert value(engine, "voiceid_engine_server_job_rtf_count", kind="identify") == 2
    assert 0 < value(engine, "voiceid_engine_server_job_rtf_sum", kind="identify") < 4
    assert value(engine, "voiceid_engine_server_running") == 0 and value(engine, "voiceid_engine_server_queued") == 0
    print("\n--- scraped from serve ---\n" + (await get(f"{w.metrics}/metrics", METRICS_TOKEN))[1]
          + "\n--- scraped from the engine server ---\n" + (await get(f"{w.engine_metrics}/metrics", METRICS_TOKEN))[1])


async def recording_notified(db: Database, file_id: str) -> bool:
    from storage.recordings import find_recording

    return (await find_recording(db, TEAM_ID, file_id)).notified_at is not None


async def test_json_log_lines_parse_carry_the_job_and_hold_no_secret(world: World):
    w = world
    lines = serve_log(w).splitlines() + (w.tmp / "engine" / "engine.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    assert all(e["time"].endswith("Z") for e in entries)
    posted = [e for e in entries if e["message"].endswith("summary posted")]
    assert len(posted) == 2 and all(e["team"] == TEAM_ID and isinstance(e["recording_id"], int) for e in posted)
    assert any("enrollment_id" in e and e["team"] == TEAM_ID for e in entries)
    refs = [e for e in entries if "ref" in e]
    assert refs and all(f"[ref {e['ref']}]" in e["message"] for e in refs)
    text = "\n".join(lines)
    for secret in (w.fake.token, SIGNING_SECRET, ENGINE_API_KEY, w.key, METRICS_TOKEN):
        assert secret not in text, f"{secret[:6]}… leaked into the log"


async def test_a_worker_serves_its_own_counters_without_the_cluster_gauges(world: World):
    w = world
    port = free_port()
    worker = start(["worker"], child_env(
        w.tmp / "serve", SLACK_BOT_TOKEN=w.fake.token, SLACK_API_URL=w.fake.api_url, DATABASE_URL=w.pg.url("voiceid"),
        DATA_ENCRYPTION_KEYS=w.key, ENGINE="server", ENGINE_URL=w.engine_url, METRICS_PORT=str(port),
        METRICS_TOKEN=METRICS_TOKEN, LOG_FORMAT="json"), w.tmp / "serve" / "worker.log")
    url = f"http://127.0.0.1:{port}"
    try:
        async def ready():
            assert worker.poll() is None, (w.tmp / "serve" / "worker.log").read_text()[-3000:]
            try:
                return (await get(f"{url}/readyz"))[0] == 200
            except aiohttp.ClientError:
                return False

        await until(ready, "the worker's metrics listener", timeout=120)
        samples = await scrape(url)
        assert value(samples, "voiceid_lease_takeovers_total", job="recording") == 0
        assert value(samples, "voiceid_recordings", state="posted") is None  # cluster-wide: serve's to report
        assert value(samples, "voiceid_database_up") is None
    finally:
        stop(worker)


async def test_readyz_fails_while_postgresql_is_down_and_the_engine_is_gone(world: World):
    w = world

    async def ready(url: str, expect: int) -> dict | None:
        status, body = await get(f"{url}/readyz")
        return json.loads(body) if status == expect else None

    w.pg.crash()
    try:
        down = await until(lambda: ready(w.base, 503), "readyz to fail", timeout=60)
        assert down == {"ok": False, "database": "unreachable", "engine": "ok"}
        assert (await get(f"{w.base}/healthz"))[0] == 200  # still alive: nothing to restart
        assert (await ready(w.metrics, 503))["database"] == "unreachable"
        assert value(await scrape(w.metrics), "voiceid_database_up") == 0
    finally:
        w.pg.start_again()
    await until(lambda: ready(w.base, 200), "readyz to recover", timeout=60)

    worker = engine_pool_worker(w.engine.pid)
    os.kill(worker, signal.SIGKILL)
    broken = await until(lambda: ready(w.engine_url, 503), "the engine server's readyz to fail", timeout=60)
    assert broken == {"ok": False, "engine": "worker_stopped", "data": "ok"}
    stop(w.engine)
    gone = await until(lambda: ready(w.base, 503), "readyz to see the engine gone", timeout=60)
    assert gone == {"ok": False, "database": "ok", "engine": "engine_unavailable"}


def engine_pool_worker(pid: int) -> int:
    """The engine server's speaker-model worker process (a spawned child that is not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = [int(c) for c in children if "spawn_main" in (cmd := Path(f"/proc/{c}/cmdline").read_text())
               and "resource_tracker" not in cmd]
    assert len(workers) == 1, children
    return workers[0]
