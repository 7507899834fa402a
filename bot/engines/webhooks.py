"""Signed job webhooks in the pyannoteAI style: signing, verification, sending and an aiohttp receiver.

The signature is HMAC-SHA256 over `v0:{X-Request-Timestamp}:{raw body}`. pyannoteAI's docs say base64
while their sample uses hex, so verification accepts both; we send base64. Timestamps older than
`tolerance` seconds are refused so a captured request cannot be replayed later.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from pydantic import ValidationError

from bot.schema import Job

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Request-Timestamp"
DEFAULT_TOLERANCE_S = 300
# pyannoteAI retries a failed delivery 3 times: immediately, after 1 min, after 5 min.
DEFAULT_RETRY_DELAYS_S: tuple[float, ...] = (0.0, 60.0, 300.0)


class InvalidSignature(Exception):
    """The webhook request is not from the engine we trust, or is too old; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _mac(secret: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).digest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The base64 signature of `body` sent at `timestamp` (Unix seconds, as a string)."""
    return base64.b64encode(_mac(secret, timestamp, body)).decode()


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify_signature(secret: str, body: bytes, timestamp: str | None, signature: str | None, *,
                     tolerance: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Raise `InvalidSignature` unless `signature` (hex or base64) matches and `timestamp` is fresh."""
    if not timestamp or not signature:
        raise InvalidSignature(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not a Unix time in seconds: {timestamp[:40]!r}") from None
    age = (time.time() if now is None else now) - sent_at
    if abs(age) > tolerance:
        raise InvalidSignature(f"timestamp is {abs(age):.0f} s away from now (more than {tolerance:.0f} s)")
    mac = _mac(secret, timestamp, body)
    candidates = (base64.b64encode(mac).decode(), mac.hex())
    if not any(hmac.compare_digest(signature.strip().encode(), c.encode()) for c in candidates):
        raise InvalidSignature("signature does not match (wrong webhook secret?)")


def webhook_payload(job: Job, *, status_only: bool = False) -> dict:
    """The body pyannoteAI posts: `{jobId, status, output?}`; no output for failed/canceled or status-only."""
    payload: dict = {"jobId": job.job_id, "status": job.status.value}
    if job.output is not None and job.status.value == "succeeded" and not status_only:
        payload["output"] = job.output
    return payload


async def send_webhook(session: ClientSession, url: str, payload: dict, secret: str, *,
                       retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS_S,
                       timeout_s: float = 10.0) -> bool:
    """POST a signed payload, retrying like pyannoteAI does; returns whether a 2xx reply arrived."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    reason: str | None = None
    for attempt in range(len(retry_delays) + 1):
        if attempt:
            await asyncio.sleep(retry_delays[attempt - 1])
        headers = {"Content-Type": "application/json", **signature_headers(secret, body)}
        if reason:
            headers.update({"x-retry-num": str(attempt), "x-retry-reason": reason})
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=ClientTimeout(total=timeout_s)) as resp:
                if 200 <= resp.status < 300:
                    return True
                reason = "http_error"
        except TimeoutError:
            reason = "http_timeout"
        except ClientError:
            reason = "connection_failed"
        log.warning("webhook for job %s to %s failed (%s), attempt %d", payload.get("jobId"), url, reason,
                    attempt + 1)
    return False


class _SeenJobs:
    """Job ids already handed over (bounded, oldest forgotten first) and those being handled now."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self.done: OrderedDict[str, None] = OrderedDict()
        self.in_flight: set[str] = set()

    def claim(self, job_id: str) -> bool:
        if job_id in self.done or job_id in self.in_flight:
            return False
        self.in_flight.add(job_id)
        return True

    def finish(self, job_id: str, handled: bool) -> None:
        self.in_flight.discard(job_id)
        if handled:
            self.done[job_id] = None
            while len(self.done) > self.capacity:
                self.done.popitem(last=False)


def webhook_routes(secret: str, on_job: Callable[[Job], Awaitable[None]], path: str = "/engine/webhook", *,
                   tolerance: float = DEFAULT_TOLERANCE_S) -> list[web.RouteDef]:
    """A POST route that verifies the signature, drops repeats of a job id and hands the Job to `on_job`.

    A failing `on_job` answers 500 so the sender retries; polling stays the fallback for lost webhooks.
    """
    seen = _SeenJobs()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(secret, body, request.headers.get(TIMESTAMP_HEADER),
                             request.headers.get(SIGNATURE_HEADER), tolerance=tolerance)
        except InvalidSignature as exc:
            log.warning("rejected engine webhook: %s", exc.reason)
            return web.json_response({"message": f"invalid webhook: {exc.reason}"}, status=401)
        try:
            job = Job.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            return web.json_response({"message": f"webhook body is not a job: {exc}"[:500]}, status=400)
        key = job.job_id
        if not seen.claim(key):
            return web.json_response({"message": "duplicate", "jobId": job.job_id})
        handled = False
        try:
            await on_job(job)
            handled = True
        except Exception:
            log.exception("handling the webhook for job %s failed", job.job_id)
            return web.json_response({"message": "could not handle the job now; retry"}, status=500)
        finally:
            seen.finish(key, handled)
        return web.json_response({"message": "ok", "jobId": job.job_id})

    return [web.post(path, receive)]
