"""Two real engine servers behind a cookie-sticky load balancer, as `bench.scale` runs them behind HAProxy
(`cookie … insert indirect nocache`): every call of one `HTTPEngine` (a worker) reaches the server that holds
its media and jobs, also when its first calls go out at once, and a second client is placed on the other server.

HAProxy is not part of the test run, so the balancer here is a small stand-in that does what HAProxy's cookie
insertion does: a request without a valid cookie goes to the next server in turn and its answer sets the cookie;
a request with one goes to that server. It keeps the Host header, so upload URLs point at it too."""
from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.engines.http import HTTPEngine, RetryPolicy
from bot.schema import JobStatus, VoiceprintRequest
from tests.engine_http_support import API_KEY, engine_server
from tests.fake_engine import FakeEngine

pytestmark = pytest.mark.asyncio

COOKIE = "VOICEID_ENGINE"


class StickyBalancer:
    def __init__(self, upstreams: dict[str, str]):
        self.upstreams = upstreams
        self.turn = itertools.cycle(upstreams)
        self.seen: list[tuple[str, str, str]] = []  # (server, method, path)
        self.server: TestServer | None = None
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        self.http = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024**2)
        app.add_routes([web.route("*", "/{tail:.*}", self.forward)])
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        await self.server.close()
        await self.http.close()

    async def forward(self, request: web.Request) -> web.Response:
        chosen = request.cookies.get(COOKIE)
        pinned = chosen in self.upstreams
        name = chosen if pinned else next(self.turn)
        self.seen.append((name, request.method, request.path))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "cookie")}
        async with self.http.request(request.method, self.upstreams[name] + request.path_qs, headers=headers,
                                     data=await request.read(), allow_redirects=False) as up:
            resp = web.Response(status=up.status, body=await up.read(),
                                headers={k: v for k, v in up.headers.items() if k.lower() == "content-type"})
        if not pinned:
            resp.set_cookie(COOKIE, name, httponly=True)
        return resp


def client(url: str) -> HTTPEngine:
    return HTTPEngine(url, API_KEY, engine_id="server", name="the engine server", recommended_threshold=75.0,
                      retry=RetryPolicy(attempts=1))


async def voiceprints(engine: HTTPEngine, tmp_path, n: int, tag: str) -> list:
    """`n` voiceprint jobs at once from a fresh client: upload, submit, wait, delete (what an enrollment does)."""
    async def one(i: int):
        clip = tmp_path / f"{tag}-{i}.wav"
        clip.write_bytes(f"clip {tag} {i}".encode() * 100)
        url = await engine.upload(clip)
        job = await engine.submit_voiceprint(VoiceprintRequest(url=url))
        job = await engine.wait(job.job_id, poll=0.05, timeout=30)
        await engine.forget(job.job_id)
        await engine.release(url)
        return job

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_each_client_keeps_to_one_server_behind_a_cookie_balancer(tmp_path):
    async with engine_server(FakeEngine(), tmp_path / "a") as a, engine_server(FakeEngine(), tmp_path / "b") as b:
        balancer = StickyBalancer({"a": str(a.make_url("")).rstrip("/"), "b": str(b.make_url("")).rstrip("/")})
        url = await balancer.start()  # http://127.0.0.1:…: cookies from an IP address must be kept
        first, second = client(url), client(url)
        try:
            jobs = await voiceprints(first, tmp_path, 4, "first")  # four at once, before any answer
            assert [j.status for j in jobs] == [JobStatus.succeeded] * 4, [j.output for j in jobs]
            servers = {name for name, _, _ in balancer.seen}
            assert len(servers) == 1, balancer.seen  # uploads, jobs, polls and deletes: one server
            calls = len(balancer.seen)

            jobs = await voiceprints(second, tmp_path, 2, "second")
            assert [j.status for j in jobs] == [JobStatus.succeeded] * 2, [j.output for j in jobs]
            assert {name for name, _, _ in balancer.seen[calls:]} == {"a", "b"} - servers  # the next in turn
        finally:
            await first.close()
            await second.close()
            await balancer.close()
