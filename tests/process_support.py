"""Real processes for the fault-injection tests: `python -m bot worker` and `python -m bot engine-server` started
as children, killed with SIGKILL, and the lease takeover that follows, watched in the shared database. Also a
gating proxy in front of the real engine server, to hold one engine call until the test has killed its caller."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from storage.database import Database
from testbed.fake_slack import TEAM_ID, FakeSlack, Gate
from testbed.slack_driver import RemoteBot, free_port  # noqa: F401 (the tests take them from here too)
from tests.shared_models import share_model_cache

ROOT = Path(__file__).resolve().parents[1]
ENGINE_API_KEY = "fault-injection-engine-key"


def child_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any bot setting of its own, plus `extra`; temporary files (a killed
    worker's audio included) and var/ in `tmp`, not in the shared tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "ENGINE", "JOB_"))}
    var_dir = share_model_cache(tmp)  # the run's exported models, not an export per child
    return env | {"PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "VAR_DIR": str(var_dir), "ENGINE_API_KEY": ENGINE_API_KEY,
                  "TRANSCRIPT": "off"} | extra  # transcript off: one upload to count, the chart


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`python -m bot ARGS`, its output appended to a file so a chatty child never blocks."""
    with log_path.open("a") as log:
        return subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=log_path.parent, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def start_worker(fake: FakeSlack, db_url: str, log_path: Path, key: str, **env: str) -> subprocess.Popen:
    """`python -m bot worker` with the default lease (30 s), polling every 0.5 s, on the fake Slack Web API."""
    return start(["worker"], child_env(log_path.parent, SLACK_BOT_TOKEN=fake.token, SLACK_API_URL=fake.api_url,
                                       DATABASE_URL=db_url, DATA_ENCRYPTION_KEYS=key,  # PostgreSQL needs a key
                                       JOB_POLL_SECONDS="0.5", **env), log_path)


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM (an orderly stop), SIGKILL if it outlasts `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def logs(directory: Path, pattern: str = "worker-*.log", tail: int = 2000) -> str:
    """The children's own words, for a failure message."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-tail:]}" for p in sorted(directory.glob(pattern)))


async def wait_engine_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until the engine server answers (it listens once its models are loaded)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            assert proc.poll() is None, "the engine server exited"
            try:
                async with http.get(f"{url}/v1/test", headers={"Authorization": f"Bearer {ENGINE_API_KEY}"}) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the engine server did not come up"
            await asyncio.sleep(0.3)


STARTED = re.compile(r"bot\.runtime: worker \S+ started")  # logged by bot.runtime.work once the runner is up


async def wait_started(workers: list[subprocess.Popen], log_paths: list[Path], timeout: float = 180) -> None:
    """Until each worker's log says it started. A worker's start ends the leases of dead workers on this host at
    once (`JobRunner.reap_dead_local_owners`); a kill after every start is taken over when the lease expires."""
    deadline, directory = time.monotonic() + timeout, log_paths[0].parent
    while not all(p.is_file() and STARTED.search(p.read_text()) for p in log_paths):
        assert all(w.poll() is None for w in workers), f"a worker exited\n{logs(directory)}"
        assert time.monotonic() < deadline, f"the workers did not start\n{logs(directory)}"
        await asyncio.sleep(0.1)


def lease_holder(workers: list[subprocess.Popen], owner: str | None) -> subprocess.Popen:
    """The worker process a lease owner (`host:pid:random`) names."""
    assert owner, "nobody holds the recording"
    [holder] = [w for w in workers if f":{w.pid}:" in owner]
    return holder


def kill_9(proc: subprocess.Popen) -> float:
    """SIGKILL, reaped; returns when it was sent (monotonic)."""
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait(10)
    return killed_at


async def wait_takeover(db: Database, file_id: str, dead_owner: str, killed_at: float, limit: float = 120):
    """Until another worker holds the recording the dead one held (or has posted it already); returns (the row
    then, seconds since the kill). A recording that fails meanwhile fails the wait."""
    from storage.models import RecordingStatus
    from storage.recordings import find_recording

    while (now := await find_recording(db, TEAM_ID, file_id)).lease_owner in (dead_owner, None):
        if now.state is RecordingStatus.posted:
            break
        assert not now.state.final, f"ended {now.status} without a takeover: {now.error_message}"
        assert time.monotonic() - killed_at < limit, f"nobody took over in {limit:.0f} s ({now.status})"
        await asyncio.sleep(0.2)
    return now, time.monotonic() - killed_at


class EngineProxy:
    """A pass-through HTTP proxy in front of the real engine server that can hold one kind of call (e.g. the
    media upload's PUT) with a `Gate`, after reading the request and before passing it on. It keeps the Host
    header, so the upload URLs the server hands out point at the proxy too."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.gates: list[tuple[str, str, Gate]] = []
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, held ones included
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    def gate(self, method: str, path_prefix: str, match: Callable[[dict], bool] = lambda params: True) -> Gate:
        gate = Gate(match)
        self.gates.append((method, path_prefix, gate))
        return gate

    async def start(self) -> str:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        app = web.Application(client_max_size=1024**3)
        app.add_routes([web.route("*", "/{tail:.*}", self._forward)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self.url

    async def close(self) -> None:
        for _, _, gate in self.gates:
            gate.open()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((request.method, request.path))
        for method, prefix, gate in self.gates:
            if request.method == method and request.path.startswith(prefix):
                await gate.hold({"path": request.path})
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection")}
        async with self._http.request(request.method, self.upstream + request.path_qs, headers=headers,
                                      data=body) as up:
            return web.Response(status=up.status, body=await up.read(),
                                headers={k: v for k, v in up.headers.items()
                                         if k.lower() in ("content-type", "retry-after", "location")})
