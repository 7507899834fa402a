"""The engine server's durable state: one JSON file per job and uploaded media, under its data directory.

Files rather than a database so that several engine servers need nothing but a disk each, and so that a
restart finds every unfinished job with its media. Writes go to a temporary file and are renamed into place,
so a crash never leaves half a job behind.
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

from bot.engines.schema import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

MEDIA_URL = re.compile(r"^media://[a-zA-Z0-9\-_./]+$")
MEDIA_URL_MAX = 255


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
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, JobRecord] = {}

    # jobs

    def load(self) -> list[JobRecord]:
        """Read every stored job at start; unreadable files are set aside, not silently dropped."""
        for path in sorted(self.jobs_dir.glob("*.json")):
            try:
                record = JobRecord.model_validate_json(path.read_bytes())
            except ValueError as exc:
                log.error("unreadable job file %s (%s); renamed to .corrupt", path.name, exc)
                path.rename(path.with_suffix(".corrupt"))
                continue
            self.jobs[record.job.job_id] = record
        for stray in self.media_dir.glob("*.part"):
            stray.unlink(missing_ok=True)
        return list(self.jobs.values())

    async def save(self, record: JobRecord) -> None:
        self.jobs[record.job.job_id] = record
        data = record.model_dump_json(by_alias=True).encode()
        await asyncio.to_thread(_write_atomic, self.jobs_dir / f"{record.job.job_id}.json", data)

    async def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        await asyncio.to_thread((self.jobs_dir / f"{job_id}.json").unlink, True)

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

    async def sweep(self, media_ttl_s: float, job_ttl_s: float, now: float | None = None) -> tuple[int, int]:
        """Delete media unused for `media_ttl_s` and finished jobs older than `job_ttl_s`; returns the counts."""
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
        return len(media), len(old)
