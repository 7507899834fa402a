"""The pyannoteAI HTTP protocol as an `Engine`: one client for pyannoteAI's cloud and for our engine server.

Transient failures (429, 5xx, network) are retried with bounded, jittered backoff; everything else maps to
the typed errors of `bot.engines.base` with a message a person can act on. Calls never follow a redirect (it
would re-send the key, voiceprints or audio to wherever it points) and go only to https:// or this machine
unless the operator allows plain HTTP (`ALLOW_INSECURE_HTTP`); a private CA is trusted with `ENGINE_CA_FILE`.

Several engine servers can sit behind a load balancer that keeps each client on one server with a cookie (a
server holds the media, jobs and upload slots it issued): the client keeps that cookie, also for an engine URL
given as an IP address, and its first call goes alone, so calls made at once before any answer cannot be
spread over two servers.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.config import url_problem
from bot.engines import batches
from bot.engines.base import Engine
from bot.errors import (
    AuthError,
    EngineError,
    EngineUnavailable,
    JobNotFound,
    MediaError,
    PaymentRequired,
    RateLimited,
    RequestError,
)
from bot.schema import (
    MAX_VOICEPRINTS_PER_JOB,
    DiarizeRequest,
    IdentifyRequest,
    Job,
    JobStatus,
    VoiceprintRequest,
)

log = logging.getLogger(__name__)

UPLOAD = "media upload"  # the `path` label of the PUT to a (presigned) upload URL


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before reporting a transient failure: `attempts` includes the first try."""

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the retry after failed attempt number `attempt` (1-based)."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))

    def after_rate_limit(self, retry_after: float | None, attempt: int) -> float:
        """Honour the server's Retry-After (capped), plus a little jitter so clients do not stampede."""
        if retry_after is None:
            return self.backoff(attempt)
        return min(retry_after, self.max_retry_after_s) + random.uniform(0, min(1.0, retry_after / 4 + 0.1))


def parse_retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def field_errors_message(payload: dict) -> tuple[str, list[dict]]:
    """`{message, errors:[{field, message}]}` as one readable line plus the raw list."""
    errors = [e for e in payload.get("errors") or [] if isinstance(e, dict)]
    listed = "; ".join(f"{e.get('field', '?')}: {e.get('message', '')}" for e in errors)
    message = payload.get("message") or "the request was refused"
    return (f"{message} ({listed})" if listed else message), errors


def error_for(status: int, payload: dict, *, engine: str, key_setting: str, path: str,
              url_setting: str = "the engine URL") -> EngineError:
    """The typed error for a non-2xx answer that retrying will not fix."""
    detail = payload.get("message") or ""
    if path == UPLOAD and status in (401, 403):
        return EngineError(f"{engine} refused the upload URL (HTTP {status}): it expired or was used; upload again",
                           transient=True)
    if status == 400:
        message, errors = field_errors_message(payload)
        return RequestError(f"{engine} refused the request: {message}", errors)
    if status in (401, 403):
        return AuthError(f"{engine} rejected the API key (HTTP {status}): check {key_setting}. {detail}".strip())
    if status == 402:
        return PaymentRequired(f"{engine} refused the job for lack of subscription, credit or budget (HTTP 402): "
                               f"top up the account, then retry. {detail}".strip())
    if status == 404 and path.startswith("/v1/jobs/"):
        return JobNotFound(f"{engine} does not know job {path.rsplit('/', 1)[-1]} (expired or lost): resubmit it")
    if status == 413:
        return MediaError(f"{engine} refused the file as too large (HTTP 413). {detail}".strip(), code="too_large")
    if 300 <= status < 400:
        return EngineError(f"{engine} answered a redirect (HTTP {status}) to {path}; API calls never follow one "
                           f"(it would re-send the request elsewhere): check {url_setting}")
    return EngineError(f"{engine} answered HTTP {status} to {path}. {detail}".strip())


def media_key(prefix: str | None, suffix: str = "") -> str:
    """A media key no other upload has: the readable `prefix` (made safe) plus a random part per call."""
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", prefix or "")[:100]
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
    return f"{prefix + '-' if prefix else ''}{uuid.uuid4().hex}{suffix}"


def _payload(text: str) -> dict:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {"message": text[:300]}
    return data if isinstance(data, dict) else {"message": str(data)[:300]}


class HTTPEngine(Engine):
    """Client of a pyannoteAI-compatible API at `base_url` (cloud or our engine server)."""

    def __init__(self, base_url: str, api_key: str, *, engine_id: str, name: str, recommended_threshold: float,
                 webhook_url: str | None = None, session: aiohttp.ClientSession | None = None,
                 key_setting: str = "the API key", retry: RetryPolicy | None = None,
                 timeout_s: float = 60.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 deletes: bool = True, url_setting: str = "the engine URL", ca_file: Path | None = None,
                 allow_insecure_http: bool = False, max_voiceprints: int = MAX_VOICEPRINTS_PER_JOB):
        problem = url_problem(url_setting, base_url, allow_insecure=allow_insecure_http)
        if problem:
            raise ValueError(problem)
        self.base_url = base_url.rstrip("/")
        self.url_setting = url_setting
        self.allow_insecure_http = allow_insecure_http
        # True: the system's CAs; a context: those plus the private CA in `ca_file`
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._api_key = api_key
        self.engine_id, self.name = engine_id, name
        self._threshold = recommended_threshold
        self.webhook_url = webhook_url
        self.key_setting = key_setting
        self.retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_s)
        self._session = session
        self._owns_session = session is None
        self._first_call = asyncio.Lock()  # held by the calls made before any answer came (see the docstring)
        self._answered = False
        self._sleep = sleep
        self.deletes = deletes  # DELETE for media and jobs (our engine server; pyannoteAI documents none)
        self.max_voiceprints = max_voiceprints  # per identify job; more are split (`bot.engines.batches`)

    def __repr__(self) -> str:  # never show the key
        return f"HTTPEngine(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def recommended_threshold(self) -> float:
        return self._threshold

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # unsafe=True: aiohttp's default jar drops cookies from IP-address hosts, a balancer's affinity too
            self._session = aiohttp.ClientSession(timeout=self._timeout, cookie_jar=aiohttp.CookieJar(unsafe=True))
            self._owns_session = True
        return self._session

    async def _call(self, method: str, url: str, **kwargs) -> dict:
        """One API call with retries (see `_attempts`); until some call has had an answer, one at a time."""
        if not self._answered:
            async with self._first_call:
                if not self._answered:
                    return await self._attempts(method, url, **kwargs)
        return await self._attempts(method, url, **kwargs)

    async def _attempts(self, method: str, url: str, *, path: str, auth: bool = True, json: dict | None = None,
                        body: Callable[[], object] | None = None, ok: tuple[int, ...] = (200, 201),
                        retry: RetryPolicy | None = None) -> dict:
        """One API call with retries; `body()` makes a fresh request body per attempt (a file stream)."""
        policy = retry or self.retry
        headers = {"Authorization": f"Bearer {self._api_key}"} if auth else {}
        last: str = ""
        retry_after: float | None = None
        for attempt in range(1, policy.attempts + 1):
            data = body() if body is not None else None
            try:
                async with self._client().request(method, url, json=json, data=data, headers=headers,
                                                  allow_redirects=False, ssl=self._ssl) as resp:
                    self._answered = True  # a balancer's affinity cookie, if any, is in the jar now
                    text = await resp.text()
                    if resp.status in ok:
                        return _payload(text)
                    payload = _payload(text)
                    if resp.status == 429:
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        last = f"rate limited (HTTP 429){': ' + payload['message'] if payload.get('message') else ''}"
                        if attempt < policy.attempts:
                            await self._sleep(policy.after_rate_limit(retry_after, attempt))
                        continue
                    if resp.status < 500:
                        raise error_for(resp.status, payload, engine=self.name, key_setting=self.key_setting,
                                        path=path, url_setting=self.url_setting)
                    last = f"HTTP {resp.status}{': ' + payload['message'] if payload.get('message') else ''}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            finally:
                if hasattr(data, "close"):
                    data.close()
            if attempt < policy.attempts:
                delay = policy.backoff(attempt)
                log.info("%s %s %s failed (%s); retry %d in %.1f s", self.name, method, path, last, attempt, delay)
                await self._sleep(delay)
        if last.startswith("rate limited"):
            raise RateLimited(f"{self.name} is busy ({last}) after {policy.attempts} tries; try again later",
                              retry_after=retry_after)
        raise EngineUnavailable(f"{self.name} at {self.base_url} is unreachable or failing ({last}) after "
                                f"{policy.attempts} tries")

    async def _api(self, method: str, path: str, json: dict | None = None, ok: tuple[int, ...] = (200, 201)) -> dict:
        return await self._call(method, self.base_url + path, path=path, json=json, ok=ok)

    async def ready(self) -> str | None:
        """`GET /v1/test` once, without retries: the URL answers and takes the key (busy, 429, still answers)."""
        try:
            await self._call("GET", self.base_url + "/v1/test", path="/v1/test", retry=RetryPolicy(attempts=1))
        except RateLimited:
            return None
        except EngineError as exc:
            return exc.code
        return None

    async def upload(self, path: Path, key: str | None = None) -> str:
        """Ask for an upload URL, then PUT the file to it, streamed from disk. `key` is a readable prefix: every
        upload gets a media key of its own, so releasing one attempt's media never deletes another's."""
        path = Path(path)
        if not path.is_file():
            raise EngineError(f"cannot upload {path}: the file does not exist")  # ours, not the person's media
        media_url = f"media://voiceid/{media_key(key, path.suffix)}"
        answer = await self._api("POST", "/v1/media/input", {"url": media_url}, ok=(200, 201))
        upload_url = answer.get("url")
        if not upload_url:
            raise EngineError(f"{self.name} gave no upload URL for {media_url}")
        if url_problem("upload URL", upload_url, allow_insecure=self.allow_insecure_http):
            raise EngineError(f"{self.name} gave an upload URL that is not https:// or on this machine, so the "
                              "audio would cross the network in clear text; an engine server behind a TLS proxy "
                              "needs PUBLIC_BASE_URL set to its https:// address")
        await self._call("PUT", upload_url, path=UPLOAD, auth=False, body=lambda: path.open("rb"),
                         ok=tuple(range(200, 300)))
        return media_url

    async def release(self, url: str) -> None:
        """Delete uploaded media now; best effort, since the server deletes it at job end or after its TTL."""
        if self.deletes and url.startswith("media://"):
            await self._delete("/v1/media/" + url[len("media://"):], url)

    async def forget(self, job_id: str) -> None:
        """Delete a finished job (every part of a batched one) and its output from the server (it keeps them 24 h
        otherwise)."""
        if self.deletes:
            for part in batches.part_ids(job_id) or [job_id]:
                await self._delete(f"/v1/jobs/{part}", f"job {part}")

    async def _delete(self, path: str, what: str) -> None:
        try:
            await self._call("DELETE", self.base_url + path, path=path, ok=(200, 204, 404, 409),
                             retry=RetryPolicy(attempts=2, base_delay_s=self.retry.base_delay_s))
        except EngineError as exc:
            log.warning("%s: could not delete %s (%s); the server's TTL deletes it", self.name, what, exc.code)

    def _with_webhook(self, request: VoiceprintRequest | DiarizeRequest) -> dict:
        """The request with our webhook, status only: the bot needs the wake-up, and reads the output (voiceprints
        among it) with the job, so biometric data is never pushed to a public URL."""
        if self.webhook_url and not request.webhook:
            request = request.model_copy(update={"webhook": self.webhook_url, "webhook_status_only": True})
        return request.wire()

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        return Job.model_validate(await self._api("POST", "/v1/voiceprint", self._with_webhook(request)))

    async def submit_identify(self, request: IdentifyRequest) -> Job:
        """One identify job, or with more voiceprints than `max_voiceprints` one per batch of them, submitted
        together (so our engine server, which deletes media when its last job ends, still has it for every part)
        and followed as one job (`bot.engines.batches`). If a part cannot be submitted, those already submitted
        are deleted (where the engine has DELETE) and the error is raised as for a single job."""
        if len(request.voiceprints) <= self.max_voiceprints:
            return await self._submit_identify(request)
        parts = batches.batches(request.voiceprints, self.max_voiceprints)
        answers = await asyncio.gather(*(self._submit_identify(request.model_copy(update={"voiceprints": part}))
                                         for part in parts), return_exceptions=True)
        submitted = [a.job_id for a in answers if isinstance(a, Job)]
        failure = next((a for a in answers if isinstance(a, BaseException)), None)
        if failure is not None:
            for job_id in submitted:
                await self.forget(job_id)
            raise failure
        log.info("%s: %d voiceprints in %d identify jobs of at most %d", self.name, len(request.voiceprints),
                 len(parts), self.max_voiceprints)
        return Job(job_id=batches.joined_id(submitted), status=JobStatus.created, progress=0.0)

    async def _submit_identify(self, request: IdentifyRequest) -> Job:
        return Job.model_validate(await self._api("POST", "/v1/identify", self._with_webhook(request)))

    async def submit_diarize(self, request: DiarizeRequest) -> Job:
        return Job.model_validate(await self._api("POST", "/v1/diarize", self._with_webhook(request)))

    async def get_job(self, job_id: str) -> Job:
        """A job, or a batched job's parts read as one (`batches.merged_job`; one part lost is JobNotFound)."""
        parts = batches.part_ids(job_id)
        if parts is None:
            return Job.model_validate(await self._api("GET", f"/v1/jobs/{job_id}"))
        return batches.merged_job(job_id, list(await asyncio.gather(*(self.get_job(p) for p in parts))))

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
