"""Webhook signatures and the receiving route: valid, wrong secret, stale, replayed, hex or base64."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from bot.engines.webhooks import (
    InvalidSignature,
    send_webhook,
    sign,
    signature_headers,
    verify_signature,
    webhook_payload,
    webhook_routes,
)
from bot.schema import Job, JobStatus

SECRET = "whsec-test-secret"


def test_signature_matches_the_documented_recipe_in_base64_and_hex():
    body, ts = b'{"jobId":"j1","status":"succeeded"}', "1700000000"
    mac = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).digest()
    assert sign(SECRET, ts, body) == base64.b64encode(mac).decode()
    verify_signature(SECRET, body, ts, base64.b64encode(mac).decode(), now=1700000000)
    verify_signature(SECRET, body, ts, mac.hex(), now=1700000100)


@pytest.mark.parametrize(("secret", "ts_offset", "reason"), [
    ("another-secret", 0, "does not match"),
    (SECRET, -301, "300 s"),
    (SECRET, 400, "300 s"),
])
def test_signature_rejections_say_why(secret, ts_offset, reason):
    now = 1700000000
    body = b'{"jobId":"j1","status":"failed"}'
    headers = signature_headers(secret, body, now=now + ts_offset)
    with pytest.raises(InvalidSignature, match=reason):
        verify_signature(SECRET, body, headers["X-Request-Timestamp"], headers["X-Signature"], now=now)


def test_tampered_body_and_missing_headers_are_rejected():
    headers = signature_headers(SECRET, b'{"a":1}')
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(SECRET, b'{"a":2}', headers["X-Request-Timestamp"], headers["X-Signature"])
    with pytest.raises(InvalidSignature, match="missing"):
        verify_signature(SECRET, b"{}", None, headers["X-Signature"])
    with pytest.raises(InvalidSignature, match="Unix time"):
        verify_signature(SECRET, b"{}", "yesterday", headers["X-Signature"])


def test_payload_leaves_output_out_when_failed_or_status_only():
    ok = Job(job_id="j", status=JobStatus.succeeded, output={"voiceprint": "AAA"})
    failed = Job(job_id="j", status=JobStatus.failed, output={"error": {"code": "bad_media", "message": "x"}})
    assert webhook_payload(ok) == {"jobId": "j", "status": "succeeded", "output": {"voiceprint": "AAA"}}
    assert webhook_payload(ok, status_only=True) == {"jobId": "j", "status": "succeeded"}
    assert webhook_payload(failed) == {"jobId": "j", "status": "failed"}


@pytest.fixture
async def receiver():
    """A real aiohttp server with the webhook route; `received` records what reached the job logic."""
    received: list[Job] = []
    failures = {"left": 0}

    async def on_job(job: Job) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database is down")
        received.append(job)

    app = web.Application()
    app.add_routes(webhook_routes(SECRET, on_job))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with ClientSession() as session:
        yield server.make_url("/engine/webhook"), session, received, failures
    await server.close()


def _signed(payload: dict, secret: str = SECRET, *, ts: float | None = None, hex_digest: bool = False):
    body = json.dumps(payload).encode()
    headers = signature_headers(secret, body, now=ts)
    if hex_digest:
        t = headers["X-Request-Timestamp"]
        mac = hmac.new(secret.encode(), f"v0:{t}:".encode() + body, hashlib.sha256)
        headers["X-Signature"] = mac.hexdigest()
    return body, {**headers, "Content-Type": "application/json"}


async def test_route_accepts_valid_and_drops_a_replayed_job_id(receiver):
    url, session, received, _ = receiver
    body, headers = _signed({"jobId": "job-1", "status": "succeeded", "output": {"voiceprint": "AAA"}})
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
    body, headers = _signed({"jobId": "job-1", "status": "succeeded", "output": {"voiceprint": "AAA"}},
                            hex_digest=True)
    async with session.post(url, data=body, headers={**headers, "x-retry-num": "1"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["message"] == "duplicate"
    assert [(j.job_id, j.status, j.output) for j in received] == [("job-1", JobStatus.succeeded,
                                                                     {"voiceprint": "AAA"})]


async def test_route_rejects_wrong_secret_and_stale_timestamp(receiver):
    url, session, received, _ = receiver
    body, headers = _signed({"jobId": "job-2", "status": "succeeded"}, secret="not-the-secret")
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 401
        assert "does not match" in (await resp.json())["message"]
    body, headers = _signed({"jobId": "job-2", "status": "succeeded"}, ts=time.time() - 301)
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 401
        assert "300 s" in (await resp.json())["message"]
    assert received == []


async def test_route_answers_500_when_the_job_logic_fails_so_the_retry_is_handled(receiver):
    url, session, received, failures = receiver
    failures["left"] = 1
    body, headers = _signed({"jobId": "job-3", "status": "failed"})
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 500
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200
    assert [j.job_id for j in received] == ["job-3"]


async def test_route_rejects_a_body_that_is_not_a_job(receiver):
    url, session, received, _ = receiver
    body, headers = _signed({"hello": "world"})
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 400
    assert received == []


async def test_send_webhook_signs_and_retries_until_delivered(receiver):
    url, session, received, failures = receiver
    failures["left"] = 2
    job = Job(job_id="job-4", status=JobStatus.succeeded, output={"voiceprint": "BBB"})
    assert await send_webhook(session, str(url), webhook_payload(job), SECRET, retry_delays=(0, 0.01, 0.01))
    assert [(j.job_id, j.output) for j in received] == [("job-4", {"voiceprint": "BBB"})]
    assert not await send_webhook(session, str(url), webhook_payload(job), "wrong", retry_delays=(0,))
