"""`kill -9` of a real `python -m bot worker` process in each stage of a recording's job, with the default lease:
while it downloads the recording from Slack, uploads it to the engine, waits on the engine, posts the summary,
uploads the chart (the five side by side). Each time the other worker process on the same PostgreSQL takes the recording over within
60 s, and the thread ends with exactly one summary and one chart.

The kill lands in the named stage by construction: a gate in the fake Slack Web API, or in a proxy in front of
the real engine server (`python -m bot engine-server`, ENGINE=server), holds that stage's call until the worker
holding the recording's lease (`host:pid:…`) is dead; then the held call goes on as if it had only been slow
(it takes effect; nobody reads the answer), which is the hard case for "exactly once". Real processes, real
engine, real speech, fake Slack Web API. See tests/test_kill_worker.py for the embedded engine."""
from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from storage.crypto import new_key
from storage.database import Database
from testbed.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack, Gate, bot_settings
from tests.process_support import (
    ENGINE_API_KEY,
    EngineProxy,
    child_env,
    free_port,
    kill_9,
    lease_holder,
    logs,
    start,
    start_worker,
    stop,
    wait_engine_ready,
    wait_started,
    wait_takeover,
)
from tests.slack_e2e_support import concat, enroll_readers, wait_status, wav_bytes

CHANNEL = "C0001"
READERS = {"U1688": "1688", "U1998": "1998"}
TAKEOVER_LIMIT = 60  # seconds from the kill until another worker holds the recording

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.postgres,
    pytest.mark.speech,
]


@dataclass
class Engine:
    url: str  # the real engine server (no proxy)
    dbs: dict[str, tuple[Database, str]]  # stage → its own database (and URL), the readers enrolled in each
    key: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(postgres_server, _pg_head, tmp_path_factory) -> AsyncIterator[Engine]:
    """One real engine server for the module (its models load once; the workers load none), and a database per
    stage (a worker claims every recording of its database): each a copy of one where the two readers were
    enrolled through the server."""
    from bot.engines.factory import make_engine
    from bot.services.context import Services

    tmp = tmp_path_factory.mktemp("engine-server")
    url = f"http://127.0.0.1:{free_port()}"
    server = start(["engine-server", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]],
                   child_env(tmp, ENGINE_DATA_DIR=str(tmp / "data"), ENGINE_WORKERS="1"), tmp / "engine-server.log")
    key = new_key()  # PostgreSQL workers refuse to start without one
    enrolled_url = postgres_server.create_database("kill_enrolled", template=_pg_head)
    # only the engine is used here: Slack's URL is a loopback one that nothing calls
    settings = bot_settings(FakeSlack(), enrolled_url, engine="server", engine_url=url,
                            engine_api_key=ENGINE_API_KEY, slack_api_url="http://127.0.0.1:9/api/")
    engine = make_engine(settings)
    enrolled = Database(enrolled_url, keys=[key])
    dbs = {}
    try:
        await wait_engine_ready(url, server)
        await enroll_readers(Services(settings=settings, db=enrolled, engine=engine), READERS, tmp)
        await enrolled.dispose()  # a template has no open connection
        for stage in STAGES:
            db_url = postgres_server.create_database(f"kill_{stage.replace('-', '_')}", template="kill_enrolled")
            dbs[stage] = (Database(db_url, keys=[key]), db_url)
        yield Engine(url, dbs, key)
    finally:
        await engine.close()
        stop(server)
        await enrolled.dispose()
        for db, _ in dbs.values():
            await db.dispose()


def is_summary(params: dict) -> bool:
    return "Who spoke in" in str(params.get("blocks"))


# stage → (where its call is held, the recording's status while it is held)
STAGES = {
    "download": (lambda fake, proxy: fake.gate("download"), "running"),
    "engine-upload": (lambda fake, proxy: proxy.gate("PUT", "/v1/media/upload/"), "running"),
    "engine-wait": (lambda fake, proxy: proxy.gate("GET", "/v1/jobs/"), "running"),
    "summary": (lambda fake, proxy: fake.gate("chat.update", is_summary), "succeeded"),
    "chart": (lambda fake, proxy: fake.gate("files.completeUploadExternal"), "succeeded"),
}


async def wait_gate(gate: Gate, stage: str, tmp_path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not gate.reached.is_set():
        assert time.monotonic() < deadline, f"no worker reached the {stage} stage\n{logs(tmp_path)}"
        await asyncio.sleep(0.05)


async def test_kill_9_in_each_stage_is_taken_over_within_a_minute(engine: Engine, tmp_path: Path):
    """The five stages run side by side (each its own fake Slack, proxy, workers and recording), so their waits
    for the lease to expire overlap; a failure names its stage."""
    outcomes = await asyncio.gather(*(kill_in_stage(engine, stage, tmp_path / stage) for stage in STAGES),
                                    return_exceptions=True)
    failed = [f"{stage}: {type(e).__name__}: {e}" for stage, e in zip(STAGES, outcomes) if isinstance(e, BaseException)]
    assert not failed, "\n\n".join(failed)


async def kill_in_stage(engine: Engine, stage: str, tmp_path: Path) -> None:
    """One recording whose worker is killed while its `stage` call is held; asserts the takeover and the thread."""
    from bot.engines.factory import make_engine
    from bot.services.context import Services
    from bot.services.recordings import store_shared_files
    from storage.recordings import find_recording

    tmp_path.mkdir()
    db, db_url = engine.dbs[stage]
    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [*READERS, BOT_USER_ID]
    proxy = EngineProxy(engine.url)
    await proxy.start()
    where, status_held = STAGES[stage]
    gate: Gate = where(fake, proxy)
    settings = bot_settings(fake, db_url, engine="server", engine_url=proxy.url, engine_api_key=ENGINE_API_KEY)
    services = Services(settings=settings, db=db, engine=make_engine(settings))
    workers: list[subprocess.Popen] = []
    try:
        f = fake.add_file(f"{stage}.wav", "audio/wav",
                          wav_bytes(concat([(r, 3) for r in READERS.values()], pause=0.5)))
        event = {"type": "message", "subtype": "file_share", "channel": CHANNEL, "user": "U0",
                 "ts": f"{int(time.time())}.000100", "files": [fake.file_object(f)]}
        await store_shared_files(services, event, TEAM_ID, BOT_USER_ID)
        worker_logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
        workers = [start_worker(fake, db_url, path, engine.key, ENGINE="server", ENGINE_URL=proxy.url)
                   for path in worker_logs]

        await wait_gate(gate, stage, tmp_path)
        await wait_started(workers, worker_logs)  # the other worker is up: it takes over when the lease expires
        held = await find_recording(db, TEAM_ID, f.id)
        assert held.state.value == status_held, (held.status, held.error_message)
        victim = lease_holder(workers, held.lease_owner)
        killed_at = kill_9(victim)
        gate.open()  # the dead worker's call goes on (its answer to nobody); the next worker's passes

        _, takeover = await wait_takeover(db, f.id, held.lease_owner, killed_at)
        print(f"\n{stage}: taken over {takeover:.1f} s after the kill")
        assert takeover < TAKEOVER_LIMIT, f"{stage}: taken over {takeover:.0f} s after the kill"
        done = await wait_status(fake, db, f.id, {"posted", "failed"}, timeout=180)
        assert done.state.value == "posted", f"{done.error_code}: {done.error_message}\n{logs(tmp_path)}"
        assert done.attempts == held.attempts + (status_held == "running")  # a summary's retry is no new attempt
        replies = fake.thread(CHANNEL, event["ts"])
        assert len(replies) == 1, f"{len(replies)} replies in the thread: {[m.text for m in replies]}"
        assert "<@U1688>" in str(replies[0].blocks) and "<@U1998>" in str(replies[0].blocks), replies[0].text
        charts = [c for c in fake.calls_to("files.completeUploadExternal")
                  if c.done and c.params["thread_ts"] == event["ts"]]
        assert len(charts) == 1, f"{len(charts)} charts in the thread"
        starts = fake.calls_to("files.getUploadURLExternal")
        assert len(starts) == 1, f"the chart upload was begun {len(starts)} times"  # the dead worker's, if it began
        submitted = proxy.calls.count(("POST", "/v1/identify"))
        assert submitted == 1, f"{submitted} engine jobs: a job the engine still runs is resumed, not submitted again"
        assert "Traceback" not in logs(tmp_path, tail=10**9)
    finally:
        for w in workers:
            stop(w)
        await services.engine.close()
        await proxy.close()
        await fake.close()
