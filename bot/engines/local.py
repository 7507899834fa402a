"""The embedded engine: pyannoteAI-style jobs over warm models in a process pool.

Models load once per worker process (the pool's initializer) and stay warm; the event loop only submits
and awaits, so an asyncio caller never blocks. Job state lives in memory (jobId → Job): a restart loses
running jobs, and `get_job` then raises JobNotFound so the caller resubmits.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue as queue_module
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from bot.engines.base import Engine
from bot.errors import EngineError, EngineUnavailable, JobNotFound, RequestError
from bot.pools import TaskSet, exit_with_parent, stop_pool
from bot.schema import (
    DiarizeRequest,
    IdentifyRequest,
    Job,
    JobStatus,
    Provenance,
    VoiceprintRequest,
    utcnow,
)
from bot.speech.matching import CALIBRATIONS, DEFAULT_DIARIZATION

log = logging.getLogger(__name__)

JOB_RETENTION = timedelta(hours=24)  # finished jobs are forgotten after this, as pyannoteAI does
# The models each diarization pipeline runs, as a result's provenance names them (`bot.schema.Provenance`).
PIPELINE_MODELS = {"v2": "segmentation-3.0 + CAM++", "v3": "segmentation-3.0 + CAM++"}

# ---- worker process side -------------------------------------------------------------------------------

_models = None
_progress_queue = None


def _init_worker(progress_queue, threads: int, diarization: str = DEFAULT_DIARIZATION,
                 model_cache: Path | None = None) -> None:
    """Pool initializer: load the models once for the life of the worker (which ends with its parent), from the
    ONNX models exported into `model_cache` by an earlier start when they are there."""
    global _models, _progress_queue
    from bot.speech.windows import SpeakerModels

    exit_with_parent()
    _progress_queue = progress_queue
    _models = SpeakerModels(threads=threads, diarization=diarization, cache=model_cache)


def _ping() -> int:
    return os.getpid()


def _report(job_id: str):
    def report(fraction: float) -> None:
        if _progress_queue is not None:
            _progress_queue.put((job_id, round(float(fraction), 3)))
    return report


def _work_voiceprint(job_id: str, path: str) -> dict:
    from bot.speech import tasks

    try:
        audio = tasks.decode_clip(Path(path))
        return tasks.make_voiceprint(_models, audio).wire()
    except EngineError as exc:
        return exc.to_output()


def _work_identify(job_id: str, path: str, request: dict, max_duration: float) -> dict:
    from bot.speech import tasks
    from bot.speech.audio import MediaStream

    req = IdentifyRequest.model_validate(request)
    report = _report(job_id)
    try:
        tasks.check_voiceprints(req.voiceprints, _models.model_id)
        audio = MediaStream(Path(path), max_duration, name="The recording")
        report(0.05)
        out = tasks.identify(_models, audio, req.voiceprints, req.matching, req.num_speakers,
                                req.min_speakers, req.max_speakers,
                                progress=lambda f: report(0.05 + 0.95 * f), exclusive=req.exclusive)
        return out.wire()
    except EngineError as exc:
        return exc.to_output()


def _work_diarize(job_id: str, path: str, request: dict, max_duration: float) -> dict:
    from bot.speech import tasks
    from bot.speech.audio import MediaStream

    req = DiarizeRequest.model_validate(request)
    report = _report(job_id)
    try:
        audio = MediaStream(Path(path), max_duration, name="The recording")
        report(0.05)
        return tasks.diarize_only(_models, audio, req.num_speakers, req.min_speakers, req.max_speakers,
                                     progress=lambda f: report(0.05 + 0.95 * f), exclusive=req.exclusive).wire()
    except EngineError as exc:
        return exc.to_output()


# ---- event loop side -----------------------------------------------------------------------------------


class LocalEngine(Engine):
    """Speaker engine running in this machine's process pool (`workers` processes, each with the models)."""

    engine_id = name = "local"

    def __init__(self, workers: int = 1, max_duration_s: float = 4 * 3600, *, threads: int | None = None,
                 diarization: str = DEFAULT_DIARIZATION, model_cache: Path | None = None):
        self.workers = workers
        self.model_cache = model_cache
        self.diarization = diarization
        self.max_duration_s = max_duration_s
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self._jobs: dict[str, Job] = {}
        self._media: dict[str, Path] = {}
        self._tasks = TaskSet()
        self._ctx = multiprocessing.get_context("spawn")
        self._queue = None
        self._pool: ProcessPoolExecutor | None = None
        self._drain: threading.Thread | None = None
        self._closed = False

    @property
    def recommended_threshold(self) -> float:
        return CALIBRATIONS[self.diarization].threshold

    # -- pool

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._closed:
            raise EngineUnavailable("The local engine is closed.")
        if self._pool is None:
            self._queue = self._ctx.Queue()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_init_worker,
                                             initargs=(self._queue, self.threads, self.diarization,
                                                       self.model_cache))
            self._drain = threading.Thread(target=self._drain_progress, args=(self._queue,), daemon=True,
                                           name="engine-progress")
            self._drain.start()
        return self._pool

    def _drain_progress(self, q) -> None:
        while True:
            try:
                item = q.get(timeout=0.5)
            except queue_module.Empty:
                if self._closed:
                    return
                continue
            except (EOFError, OSError, ValueError):
                return
            if item is None:
                return
            job_id, fraction = item
            job = self._jobs.get(job_id)
            if job is not None and not job.status.final:
                self._jobs[job_id] = job.model_copy(update={"progress": fraction, "updated_at": utcnow()})

    async def start(self) -> None:
        """Start the workers and load their models now rather than on the first job."""
        loop = asyncio.get_running_loop()
        pool = self._ensure_pool()
        await asyncio.gather(*(loop.run_in_executor(pool, _ping) for _ in range(self.workers)))

    async def ready(self) -> str | None:
        """The worker processes are alive (not yet started counts as ready: they start with the first job)."""
        if self._closed:
            return "closed"
        return "worker_stopped" if self._pool is not None and getattr(self._pool, "_broken", False) else None

    async def _run(self, fn, *args) -> dict:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._ensure_pool(), fn, *args)
        except BrokenProcessPool:
            self._pool = None  # a worker died (out of memory?): the next job gets a fresh pool
            raise EngineUnavailable("The speaker engine's worker stopped unexpectedly; please try again.") from None

    # -- media

    async def upload(self, path: Path, key: str | None = None) -> str:
        path = Path(path).resolve()
        if not path.is_file():
            raise RequestError(f"No such file: {path.name}")
        key = f"{key}-{uuid.uuid4().hex}" if key else uuid.uuid4().hex  # one per upload: see HTTPEngine.upload
        self._media[key] = path
        return f"media://{key}"

    def resolve(self, url: str) -> Path:
        """media://key (uploaded), file:// URL or absolute path → local file."""
        if url.startswith("media://"):
            key = url[len("media://"):]
            if key not in self._media:
                raise RequestError(f"Unknown media {url}: upload it first.",
                                   [{"field": "url", "message": "unknown media key"}])
            return self._media[key]
        if url.startswith("file://"):
            path = Path(unquote(urlparse(url).path))
        elif os.path.isabs(url):
            path = Path(url)
        else:
            raise RequestError(f"The local engine cannot fetch {url!r}; pass media://, file:// or a path.",
                               [{"field": "url", "message": "unsupported URL"}])
        if not path.is_file():
            raise RequestError(f"No such file: {path.name}", [{"field": "url", "message": "file not found"}])
        return path

    async def release(self, url: str) -> None:
        if url.startswith("media://"):
            self._media.pop(url[len("media://"):], None)

    # -- jobs

    async def forget(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.status.final:
            del self._jobs[job_id]

    def _new_job(self) -> Job:
        self._forget_old_jobs()
        job = Job(job_id=str(uuid.uuid4()), status=JobStatus.created, progress=0.0)
        self._jobs[job.job_id] = job
        return job

    def _forget_old_jobs(self) -> None:
        cutoff = utcnow() - JOB_RETENTION
        for job_id, job in list(self._jobs.items()):
            if job.status.final and job.updated_at < cutoff:
                del self._jobs[job_id]

    def job_provenance(self, threshold: float | None) -> dict:
        """What a job's output says made it: the pipeline, its models and the threshold applied (None: a
        diarize-only job compared nobody)."""
        return Provenance(pipeline=self.diarization, models=PIPELINE_MODELS.get(self.diarization, "CAM++"),
                          threshold=threshold).wire()

    def _spawn(self, job: Job, fn, *args, provenance: dict | None = None) -> None:
        self._tasks.spawn(self._execute(job.job_id, fn, *args, provenance=provenance), name=f"engine job {job.job_id}")

    async def _execute(self, job_id: str, fn, *args, provenance: dict | None = None) -> None:
        self._set(job_id, status=JobStatus.running)
        try:
            output = await self._run(fn, job_id, *args)
        except EngineError as exc:
            output = exc.to_output()
        except Exception:  # an engine bug must still finish the job, not leave it running forever
            log.exception("engine job %s crashed", job_id)
            output = EngineError("The speaker engine failed on this file.", code="engine_error").to_output()
        failed = "error" in output
        if provenance is not None and not failed:
            output = {**output, "provenance": provenance}
        self._set(job_id, status=JobStatus.failed if failed else JobStatus.succeeded, output=output,
                  progress=None if failed else 1.0)

    def _set(self, job_id: str, **changes) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            self._jobs[job_id] = job.model_copy(update={**changes, "updated_at": utcnow()})

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        path = self.resolve(request.url)
        job = self._new_job()
        self._spawn(job, _work_voiceprint, str(path))
        return job

    async def submit_identify(self, request: IdentifyRequest) -> Job:
        path = self.resolve(request.url)
        job = self._new_job()
        self._spawn(job, _work_identify, str(path), request.model_dump(by_alias=True), self.max_duration_s,
                    provenance=self.job_provenance(request.matching.threshold))
        return job

    async def submit_diarize(self, request: DiarizeRequest) -> Job:
        path = self.resolve(request.url)
        job = self._new_job()
        self._spawn(job, _work_diarize, str(path), request.model_dump(by_alias=True), self.max_duration_s,
                    provenance=self.job_provenance(None))
        return job

    async def get_job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"Job {job_id} is unknown to this engine (expired, or lost in a restart).")
        return job

    async def close(self) -> None:
        self._closed = True
        await self._tasks.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, stop_pool, pool)
        if self._queue is not None:
            self._queue.put(None)
            if self._drain is not None:
                self._drain.join(timeout=2)
            self._queue.close()
