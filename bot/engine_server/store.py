"""The engine server's durable state: one JSON file per unfinished job and uploaded media, under its data directory.

Files rather than a database so that several engine servers need nothing but a disk each, and so that a
restart finds every unfinished job with its media. Writes go to a temporary file and are renamed into place,
so a crash never leaves half a job behind.

Biometric data never reaches the disk: a job file leaves out the identify request's voiceprints (and their
labels, the people's ids), and it is deleted the moment the job ends, so outputs (a voiceprint job's output
is a voiceprint) live in memory only until the client deletes the job or its TTL passes.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bot.schema import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

MEDIA_URL = re.compile(r"^media://[a-zA-Z0-9\-_./]+$")
MEDIA_URL_MAX = 255
IN_MEMORY_ONLY = frozenset({"voiceprints"})  # request fields never written to a job file


class JobRecord(BaseModel):
    """A job as the server keeps it: the public `Job` plus what it needs to run it again."""

    job: Job
    kind: Literal["voiceprint", "identify", "diarize"]
    request: dict
    media_key: str
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def webhook(self) -> str | None:
        return self.request.get("webhook")

    @property
    def final(self) -> bool:
        return self.job.status.final

    @property
    def runnable(self) -> bool:
        """False for an identify job whose voiceprints were not kept (it was read back from disk)."""
        return self.kind != "identify" or bool(self.request.get("voiceprints"))

    def on_disk(self) -> bytes:
        """What the job file holds: enough to run the job again, without voiceprints or any output."""
        request = {k: v for k, v in self.request.items() if k not in IN_MEMORY_ONLY}
        job = self.job.model_copy(update={"output": None})
        return self.model_copy(update={"request": request, "job": job}).model_dump_json(by_alias=True).encode()

    def wipe(self) -> None:
        """Drop the voiceprints from memory once the job has no more use for them."""
        for name in IN_MEMORY_ONLY:
            self.request.pop(name, None)

    def set_status(self, status: JobStatus, output: dict | None = None, warning: str | None = None) -> None:
        self.job = self.job.model_copy(update={"status": status, "updated_at": utcnow(), "output": output,
                                               "warning": warning})
        if status.final:
            self.finished_at = time.time()


class MediaMeta(BaseModel):
    key: str
    size: int
    uploaded_at: float = Field(default_factory=time.time)


class TooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class ServerStore:
    """Jobs in memory, written through to `jobs/<id>.json`; media in `media/<sha256 of key>.{bin,json}`."""

    def __init__(self, data_dir: Path):
        self.jobs_dir = Path(data_dir) / "jobs"
        self.media_dir = Path(data_dir) / "media"
        Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (self.jobs_dir, self.media_dir):  # people's audio: owner only, whatever the umask left
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)
        self.jobs: dict[str, JobRecord] = {}

    # jobs

    def load(self) -> list[JobRecord]:
        """Read every unfinished job at start; unreadable files are set aside (and swept after the job TTL).

        A finished job's file (written by an older version, with its output) is deleted, as are the
        half-written files a crash left."""
        for stray in [*self.media_dir.glob("*.part"), *self.jobs_dir.glob("*.tmp")]:
            stray.unlink(missing_ok=True)
        for path in sorted(self.jobs_dir.glob("*.json")):
            try:
                record = JobRecord.model_validate_json(path.read_bytes())
            except ValueError as exc:
                log.error("unreadable job file %s (%s); renamed to .corrupt", path.name, exc)
                path.rename(path.with_suffix(".corrupt"))
                continue
            if record.final:
                path.unlink(missing_ok=True)
                continue
            self.jobs[record.job.job_id] = record
        return list(self.jobs.values())

    def _job_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    async def save(self, record: JobRecord) -> None:
        """Keep the record; on disk only while it is unfinished (a restart needs nothing of a finished job)."""
        self.jobs[record.job.job_id] = record
        path = self._job_path(record.job.job_id)
        if record.final:
            await asyncio.to_thread(path.unlink, True)
        else:
            await asyncio.to_thread(_write_atomic, path, record.on_disk())

    async def drop_file(self, job_id: str) -> None:
        await asyncio.to_thread(self._job_path(job_id).unlink, True)

    async def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        await self.drop_file(job_id)

    def active(self) -> list[JobRecord]:
        return [r for r in self.jobs.values() if not r.final]

    # media

    def _base(self, key: str) -> Path:
        return self.media_dir / hashlib.sha256(key.encode()).hexdigest()

    def media_path(self, key: str) -> Path:
        return self._base(key).with_suffix(".bin")

    def media_meta(self, key: str) -> MediaMeta | None:
        meta = self._base(key).with_suffix(".json")
        try:
            return MediaMeta.model_validate_json(meta.read_bytes())
        except (OSError, ValueError):
            return None

    async def write_media(self, key: str, chunks: AsyncIterator[bytes], limit: int) -> MediaMeta:
        """Stream an upload to disk; over `limit` bytes it is deleted and `TooLarge` raised."""
        base = self._base(key)
        part = base.with_suffix(".part")
        size = 0
        handle = await asyncio.to_thread(part.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                await asyncio.to_thread(handle.write, chunk)
        except BaseException:
            handle.close()
            part.unlink(missing_ok=True)
            raise
        handle.close()
        meta = MediaMeta(key=key, size=size)
        await asyncio.to_thread(os.replace, part, base.with_suffix(".bin"))
        await asyncio.to_thread(_write_atomic, base.with_suffix(".json"), meta.model_dump_json().encode())
        return meta

    def delete_media(self, key: str) -> None:
        base = self._base(key)
        for suffix in (".bin", ".json", ".part"):
            base.with_suffix(suffix).unlink(missing_ok=True)

    def all_media(self) -> list[MediaMeta]:
        found = []
        for meta_path in self.media_dir.glob("*.json"):
            try:
                found.append(MediaMeta.model_validate_json(meta_path.read_bytes()))
            except (OSError, ValueError):
                continue
        return found

    def _old_corrupt_files(self, ttl_s: float, now: float) -> list[Path]:
        return [p for p in self.jobs_dir.glob("*.corrupt") if now - p.stat().st_mtime > ttl_s]

    async def sweep(self, media_ttl_s: float, job_ttl_s: float, now: float | None = None) -> tuple[int, int]:
        """Delete media unused for `media_ttl_s`, and finished jobs and set-aside (`.corrupt`) job files
        older than `job_ttl_s`; returns the counts (media, jobs)."""
        now = time.time() if now is None else now
        in_use = {r.media_key for r in self.active()}
        media = [m.key for m in await asyncio.to_thread(self.all_media)
                 if m.key not in in_use and now - m.uploaded_at > media_ttl_s]
        for key in media:
            await asyncio.to_thread(self.delete_media, key)
        old = [r.job.job_id for r in self.jobs.values()
               if r.final and r.finished_at is not None and now - r.finished_at > job_ttl_s]
        for job_id in old:
            await self.forget(job_id)
        corrupt = await asyncio.to_thread(self._old_corrupt_files, job_ttl_s, now)
        for path in corrupt:
            await asyncio.to_thread(path.unlink, True)
        return len(media), len(old) + len(corrupt)
