"""`python -m bot engine-server`: any `Engine` (the local one) served over the pyannoteAI HTTP protocol.

So that teams can move speaker work to other machines and the bot can switch with `ENGINE=server`. Unfinished
jobs and media are kept in the data directory: after a restart unfinished jobs run again from their stored
media, or end `failed` with a reason. Voiceprints never touch the disk, so an identify job cut short by a
restart is forgotten (404) and its client submits it again. Media are deleted when their job ends, on
`DELETE /v1/media/{key}`, or after a TTL if never used; finished jobs stay in memory until
`DELETE /v1/jobs/{id}` or their TTL. `transcription: true` adds the words (`bot.engine_server.transcripts`).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, web
from pydantic import BaseModel, ValidationError

from bot.engine_server import monitoring
from bot.engine_server.store import MEDIA_URL, MEDIA_URL_MAX, JobRecord, ServerStore, TooLarge
from bot.engine_server.transcripts import ServerTranscriber, TranscriptionSettings
from bot.engines.base import Engine, follow
from bot.engines.webhooks import DEFAULT_RETRY_DELAYS_S, send_webhook, webhook_payload
from bot.errors import EngineError
from bot.pools import TaskSet
from bot.schema import DiarizeRequest, IdentifyRequest, Job, JobStatus, VoiceprintRequest

log = logging.getLogger(__name__)

MiB = 1024 * 1024
ENGINE_SHARE = 0.4  # of a job's progress, the engine's part when recognition follows it


@dataclass(frozen=True)
class ServerLimits:
    """Admission and retention limits; pyannoteAI's own by default, small ones in tests."""

    queue_size: int = 16
    voiceprint_max_bytes: int = 100 * MiB
    identify_max_bytes: int = 1024 * MiB
    media_ttl_s: float = 24 * 3600
    job_ttl_s: float = 24 * 3600
    upload_url_ttl_s: float = 3600
    max_attempts: int = 3
    sweep_every_s: float = 60
    webhook_retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
    max_voiceprints: int = 50  # per identify job (ENGINE_MAX_VOICEPRINTS)


def error_response(status: int, message: str, errors: list[dict] | None = None,
                   headers: dict | None = None) -> web.Response:
    body: dict = {"message": message}
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status, headers=headers)


def field_errors(exc: ValidationError) -> list[dict]:
    """Pydantic errors as pyannoteAI's `[{field, message}]`, fields in wire (camelCase) spelling."""
    return [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()]


def retry_after_s(waiting: int, workers: int, mean_job_s: float) -> int:
    """Seconds until a queue slot is likely free: one job's time per worker ahead, at least 1 s."""
    return max(1, min(600, math.ceil(mean_job_s * (waiting + 1) / max(1, workers))))


class EngineServer:
    """Routes, queue and runners around one engine."""

    def __init__(self, engine: Engine, api_key: str, data_dir: Path, *, limits: ServerLimits,
                 workers: int, webhook_secret: str | None, public_url: str | None,
                 transcription: TranscriptionSettings):
        self.engine = engine
        self.transcriber = ServerTranscriber(transcription)
        self._api_key = api_key
        self.store = ServerStore(data_dir)
        self.limits = limits
        self.workers = workers
        self.webhook_secret = webhook_secret
        self.public_url = public_url.rstrip("/") if public_url else None
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.upload_slots: dict[str, tuple[str, float]] = {}
        self.mean_job_s = 30.0
        self.tasks = TaskSet()
        self.session: ClientSession | None = None

    # lifecycle

    async def lifetime(self, app: web.Application):
        """aiohttp cleanup context: start, then stop (its tasks cancelled before the recognizer closes)."""
        await self.start(app)
        yield
        await self.stop(app)

    async def start(self, app: web.Application) -> None:
        self.session = ClientSession()
        for record in self.store.load():
            if record.final:
                continue
            await self._recover(record)
        for _ in range(self.workers):
            self._spawn(self._runner())
        self._spawn(self._sweeper())

    async def _recover(self, record: JobRecord) -> None:
        """A job left unfinished by a stop or crash runs again, or fails with the reason it cannot."""
        if not record.runnable:
            log.info("forgetting identify job %s after a restart: its voiceprints were kept in memory only",
                     record.job.job_id)
            await self._drop(record)
        elif record.attempts >= self.limits.max_attempts:
            await self._finish(record, JobStatus.failed, _error(
                "engine_restarted", f"the engine server stopped {record.attempts} times while running this job"))
        elif not self.store.media_path(record.media_key).exists():
            await self._finish(record, JobStatus.failed, _error(
                "media_lost", "the engine server restarted and this job's media is gone: upload it and resubmit"))
        else:
            log.info("re-running job %s after a restart", record.job.job_id)
            record.set_status(JobStatus.created)
            await self.store.save(record)
            self.queue.put_nowait(record.job.job_id)

    async def stop(self, app: web.Application) -> None:
        await self.tasks.cancel()
        if self.session is not None:
            await self.session.close()

    def _spawn(self, coro) -> asyncio.Task:
        return self.tasks.spawn(coro)

    # auth

    @web.middleware
    async def auth(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path in monitoring.PROBES or (request.method == "PUT" and request.path.startswith("/v1/media/upload/")):
            return await handler(request)  # a probe carries nothing; an upload URL's one-time token is its credential
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            return error_response(401, "missing or wrong API key: send 'Authorization: Bearer <ENGINE_API_KEY>'")
        return await handler(request)

    # routes

    async def test(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "OK", "message": "Test connection successful"})

    async def media_input(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        url = body.get("url")
        problem = _media_url_problem(url)
        if problem:
            return error_response(400, "invalid media URL", [{"field": "url", "message": problem}])
        token = secrets.token_urlsafe(24)
        now = time.time()
        self.upload_slots = {t: s for t, s in self.upload_slots.items() if s[1] > now}
        self.upload_slots[token] = (url, now + self.limits.upload_url_ttl_s)
        host, port = request.transport.get_extra_info("sockname")[:2]  # where it came to, never its Host header
        base = self.public_url or f"{request.scheme}://{f'[{host}]' if ':' in host else host}:{port}"
        return web.json_response({"url": f"{base}/v1/media/upload/{token}"}, status=201)

    async def media_upload(self, request: web.Request) -> web.Response:
        slot = self.upload_slots.pop(request.match_info["token"], None)
        if slot is None or slot[1] < time.time():
            return error_response(403, "this upload URL is unknown, used or expired: ask POST /v1/media/input again")
        key, _ = slot
        limit = self.limits.identify_max_bytes
        if request.content_length is not None and request.content_length > limit:
            return error_response(413, f"file is {request.content_length} bytes; the limit is {limit} bytes")
        try:
            meta = await self.store.write_media(key, request.content.iter_chunked(1024 * 1024), limit)
        except TooLarge:
            return error_response(413, f"file is larger than the limit of {limit} bytes")
        log.info("stored media %s (%d bytes)", key, meta.size)
        return web.Response(status=200)

    async def voiceprint(self, request: web.Request) -> web.Response:
        return await self._submit(request, "voiceprint", VoiceprintRequest, self.limits.voiceprint_max_bytes)

    async def identify(self, request: web.Request) -> web.Response:
        return await self._submit(request, "identify", IdentifyRequest, self.limits.identify_max_bytes)

    async def diarize(self, request: web.Request) -> web.Response:
        return await self._submit(request, "diarize", DiarizeRequest, self.limits.identify_max_bytes)

    async def get_job(self, request: web.Request) -> web.Response:
        record = self.store.jobs.get(request.match_info["job_id"])
        if record is None:
            return error_response(404, JOB_NOT_FOUND)
        return web.json_response(record.job.wire())

    async def delete_job(self, request: web.Request) -> web.Response:
        """Forget a job now, with its output; an unfinished one is dropped and its result discarded."""
        record = self.store.jobs.get(request.match_info["job_id"])
        if record is None:
            return error_response(404, JOB_NOT_FOUND)
        await self._drop(record)
        return web.Response(status=204)

    async def delete_media(self, request: web.Request) -> web.Response:
        """Delete uploaded media now (idempotent); media an unfinished job still needs is refused (409)."""
        url = "media://" + request.match_info["key"]
        problem = _media_url_problem(url)
        if problem:
            return error_response(400, "invalid media key", [{"field": "key", "message": problem}])
        if any(r.media_key == url for r in self.store.active()):
            return error_response(409, "an unfinished job uses this media; it is deleted when the job ends")
        self.upload_slots = {t: s for t, s in self.upload_slots.items() if s[0] != url}
        await asyncio.to_thread(self.store.delete_media, url)
        return web.Response(status=204)

    async def _submit(self, request: web.Request, kind: str, model: type[BaseModel], max_bytes: int) -> web.Response:
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        try:
            parsed = model.model_validate(body, context={"max_voiceprints": self.limits.max_voiceprints})
        except ValidationError as exc:
            return error_response(400, "invalid request", field_errors(exc))
        problem = _media_url_problem(parsed.url)
        meta = None if problem else self.store.media_meta(parsed.url)
        if problem or meta is None:
            message = problem or "no media at this URL: upload it first (POST /v1/media/input, then PUT)"
            return error_response(400, "invalid request", [{"field": "url", "message": message}])
        if meta.size > max_bytes:
            return error_response(413, f"the {kind} input is {meta.size} bytes; the limit is {max_bytes} bytes")
        if parsed.webhook and not self.webhook_secret:
            return error_response(400, "invalid request", [{"field": "webhook", "message":
                                  "this engine server has no ENGINE_WEBHOOK_SECRET to sign webhooks with"}])
        active = self.store.active()
        if len(active) >= self.workers + self.limits.queue_size:
            waiting = len(active) - self.workers
            wait = retry_after_s(waiting, self.workers, self.mean_job_s)
            monitoring.rejected()
            return error_response(429, f"the engine server is busy ({waiting} jobs waiting); retry in {wait} s",
                                  headers={"Retry-After": str(wait)})
        record = JobRecord(job=Job(job_id=str(uuid.uuid4()), status=JobStatus.created), kind=kind,
                           request=parsed.wire(), media_key=parsed.url)
        await self.store.save(record)
        self.queue.put_nowait(record.job.job_id)
        return web.json_response({"jobId": record.job.job_id, "status": record.job.status.value})

    # work

    async def _runner(self) -> None:
        while True:
            job_id = await self.queue.get()
            record = self.store.jobs.get(job_id)
            if record is None or record.final:
                continue
            try:
                await self._run(record)
            except OSError:  # the data directory failed (disk full?): keep serving the other jobs
                log.exception("could not record job %s; it re-runs or fails at the next start", job_id)

    async def _run(self, record: JobRecord) -> None:
        """Run one job on the engine; a cancellation (server stop) leaves it `running` for recovery."""
        record.attempts += 1
        record.started_at = time.time()
        record.set_status(JobStatus.running)
        await self.store.save(record)
        engine_url = None
        try:
            engine_url = await self.engine.upload(self.store.media_path(record.media_key), key=record.job.job_id)
            request = {**record.request, "url": engine_url}
            request.pop("webhook", None)
            transcribe = bool(request.pop("transcription", False))  # ours to do, not the engine's
            share = ENGINE_SHARE if transcribe else 1.0
            if record.kind == "voiceprint":
                submitted = await self.engine.submit_voiceprint(VoiceprintRequest.model_validate(request))
            elif record.kind == "diarize":
                submitted = await self.engine.submit_diarize(DiarizeRequest.model_validate(request))
            else:
                submitted = await self.engine.submit_identify(IdentifyRequest.model_validate(request))
            done = await self._follow(record, submitted.job_id, share)
            await self.engine.forget(submitted.job_id)  # the output lives on in this server's record only
            status, output, warning = done.status, done.output, done.warning
            if transcribe and status is JobStatus.succeeded:
                output = await self.transcriber.transcribe(
                    record.kind, output, self.store.media_path(record.media_key),
                    lambda f: _show_progress(record, share + (1 - share) * f))
        except asyncio.CancelledError:
            raise
        except EngineError as exc:
            status, output, warning = JobStatus.failed, exc.to_output(), None
        except Exception as exc:
            log.exception("job %s failed inside the engine server", record.job.job_id)
            status, output, warning = JobStatus.failed, _error("internal_error", f"engine server error: {exc}"), None
        finally:
            if engine_url is not None:
                await asyncio.shield(self.engine.release(engine_url))
        self.mean_job_s = 0.8 * self.mean_job_s + 0.2 * (time.time() - record.started_at)
        monitoring.job_ended(record, status, output)
        await self._finish(record, status, output, warning)

    async def _follow(self, record: JobRecord, engine_job_id: str, share: float = 1.0) -> Job:
        """Wait for the engine's job, showing its progress (scaled to its `share`) on ours."""

        async def update(job: Job) -> None:
            if job.progress is not None:
                _show_progress(record, share * job.progress)

        return await follow(self.engine, engine_job_id, interval=0.1, on_update=update)

    async def _finish(self, record: JobRecord, status: JobStatus, output: dict | None,
                      warning: str | None = None) -> None:
        record.wipe()
        # The media and the job file go before the status shows final, so a client that sees the end finds
        # nothing of the job on disk.
        await self._release_media(record.media_key, finishing=record)
        if self.store.jobs.get(record.job.job_id) is not record:  # deleted while it ran: discard the result
            return
        await self.store.drop_file(record.job.job_id)
        record.set_status(status, output, warning)
        await self.store.save(record)
        if record.webhook and self.webhook_secret and self.session is not None:
            payload = webhook_payload(record.job, status_only=bool(record.request.get("webhookStatusOnly")))
            self._spawn(send_webhook(self.session, record.webhook, payload, self.webhook_secret,
                                     retry_delays=self.limits.webhook_retry_delays_s))

    async def _drop(self, record: JobRecord) -> None:
        record.wipe()
        await self.store.forget(record.job.job_id)
        await self._release_media(record.media_key)

    async def _release_media(self, key: str, finishing: JobRecord | None = None) -> None:
        """Delete the media once no unfinished job (other than the one `finishing`) needs it."""
        if not any(r.media_key == key and r is not finishing for r in self.store.active()):
            await asyncio.to_thread(self.store.delete_media, key)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.limits.sweep_every_s)
            try:
                media, jobs = await self.store.sweep(self.limits.media_ttl_s, self.limits.job_ttl_s)
                if media or jobs:
                    log.info("deleted %d unused media and %d expired jobs", media, jobs)
            except OSError:
                log.exception("sweeping the engine server's data directory failed")


JOB_NOT_FOUND = "job not found: unknown id, deleted, finished more than 24 h ago, or lost in a restart (resubmit it)"


def _show_progress(record: JobRecord, fraction: float) -> None:
    """In memory only: progress is not worth a write."""
    fraction = round(fraction, 3)
    if fraction != record.job.progress:
        record.job = record.job.model_copy(update={"progress": fraction})


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _media_url_problem(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return "required: a media:// URL"
    if len(url) > MEDIA_URL_MAX:
        return f"at most {MEDIA_URL_MAX} characters"
    if not MEDIA_URL.match(url):
        return "must look like media://<key> with letters, digits and - _ . / only (this server only reads media://)"
    if {"", ".", ".."} & set(url[len("media://"):].split("/")):
        return "must not contain '.', '..' or empty path segments (a key names media, not a path)"
    return None


async def _json(request: web.Request) -> dict | web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "the request body is not JSON", [{"field": "body", "message": "invalid JSON"}])
    if not isinstance(body, dict):
        return error_response(400, "the request body must be a JSON object", [{"field": "body", "message":
                                                                                 "expected an object"}])
    return body


ENGINE_SERVER = web.AppKey("engine_server", EngineServer)


def create_app(engine: Engine, api_key: str, data_dir: Path, *, limits: ServerLimits | None = None,
               workers: int | None = None, webhook_secret: str | None = None,
               public_url: str | None = None, transcription: TranscriptionSettings | None = None) -> web.Application:
    """The engine server as an aiohttp app; the caller owns (and closes) `engine`. `transcription` configures
    the recognizer for jobs with `transcription: true`; upload URLs start with `public_url` when given."""
    if not api_key:
        raise ValueError("the engine server needs an API key (ENGINE_API_KEY)")
    server = EngineServer(engine, api_key, data_dir, limits=limits or ServerLimits(),
                          workers=workers or getattr(engine, "workers", 1), webhook_secret=webhook_secret,
                          public_url=public_url, transcription=transcription or TranscriptionSettings())
    app = web.Application(middlewares=[server.auth], client_max_size=4 * MiB)
    app[ENGINE_SERVER] = server
    # Cleanup contexts stop in reverse: the server's tasks end before the recognizer's process does, so a job
    # cut short keeps its `running` state for recovery instead of failing on a dead recognizer.
    app.cleanup_ctx.extend([server.transcriber.context, server.lifetime])
    app.add_routes([
        web.get("/v1/test", server.test),
        web.post("/v1/media/input", server.media_input),
        web.put("/v1/media/upload/{token}", server.media_upload),
        web.post("/v1/voiceprint", server.voiceprint),
        web.post("/v1/identify", server.identify),
        web.post("/v1/diarize", server.diarize),
        web.get("/v1/jobs/{job_id}", server.get_job),
        web.delete("/v1/jobs/{job_id}", server.delete_job),
        web.delete("/v1/media/{key:.+}", server.delete_media), *monitoring.routes(server),
    ])
    return app
