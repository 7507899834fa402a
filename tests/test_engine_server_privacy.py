"""The engine server keeps no biometric data at rest: voiceprints stay in memory, job files vanish at job end,
media goes on release, and DELETE exists for jobs and media — all through its real HTTP API.

The engine behind the server is a stand-in whose jobs finish when the test says, so the data directory can be
inspected while a job runs (the server's own behaviour, not the speaker model, is under test here).
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession

from bot.engine_server.app import ENGINE_SERVER
from bot.engine_server.store import JobRecord, ServerStore
from bot.engines.base import Engine
from bot.errors import JobNotFound, RequestError
from bot.schema import IdentifyRequest, Job, JobStatus, VoiceprintInput, VoiceprintRequest
from tests.engine_http_support import API_KEY, client_for, engine_server

pytestmark = pytest.mark.asyncio(loop_scope="function")

SECRET_VOICEPRINT = "VPSECRETVOICEPRINTBYTES0123456789"
SECRET_USER = "USECRETPERSON"
OUTPUT_VOICEPRINT = "OUTPUTVOICEPRINT9876543210"


class GatedEngine(Engine):
    """Jobs run until `gate` is set; identify requests are recorded so the test sees what the engine got."""

    engine_id = name = "gated"

    def __init__(self, *, open_gate: bool = False):
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.identify_requests: list[IdentifyRequest] = []
        self.outputs: dict[str, dict] = {}
        self.forgotten: list[str] = []

    @property
    def recommended_threshold(self) -> float:
        return 50.0

    async def upload(self, path: Path, key: str | None = None) -> str:
        assert Path(path).is_file()
        return f"media://{key}"

    def _job(self, output: dict) -> Job:
        job = Job(job_id=f"inner-{len(self.outputs)}", status=JobStatus.created)
        self.outputs[job.job_id] = output
        return job

    async def submit_voiceprint(self, request: VoiceprintRequest) -> Job:
        return self._job({"voiceprint": OUTPUT_VOICEPRINT})

    async def submit_identify(self, request: IdentifyRequest) -> Job:
        self.identify_requests.append(request)
        label = request.voiceprints[0].label
        return self._job({"diarization": [], "identification": [],
                          "voiceprints": [{"speaker": "SPEAKER_00", "match": label, "confidence": {label: 90.0}}]})

    async def get_job(self, job_id: str) -> Job:
        if not self.gate.is_set():
            return Job(job_id=job_id, status=JobStatus.running, progress=0.5)
        return Job(job_id=job_id, status=JobStatus.succeeded, output=self.outputs[job_id])

    async def forget(self, job_id: str) -> None:
        self.forgotten.append(job_id)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _disk_holds(root: Path, *needles: str) -> list[str]:
    return [f"{p.name}: {n}" for p in _files(root) for n in needles if n.encode() in p.read_bytes()]


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF" + bytes(2000))
    return path


def _identify(url: str) -> IdentifyRequest:
    return IdentifyRequest(url=url, voiceprints=[VoiceprintInput(label=SECRET_USER, voiceprint=SECRET_VOICEPRINT)])


async def test_identify_voiceprints_never_reach_the_disk_and_the_job_end_wipes_files_and_media(tmp_path, clip):
    engine, data = GatedEngine(), tmp_path / "engine"
    async with engine_server(engine, data) as srv:
        client = client_for(srv)
        url = await client.upload(clip)
        job = await client.submit_identify(_identify(url))
        await _until(lambda: engine.identify_requests)
        assert engine.identify_requests[0].voiceprints[0].voiceprint == SECRET_VOICEPRINT  # in memory it works
        store = srv.app[ENGINE_SERVER].store
        assert (store.jobs_dir / f"{job.job_id}.json").is_file(), "an unfinished job is kept for a restart"
        assert _disk_holds(data, SECRET_VOICEPRINT, SECRET_USER) == []

        engine.gate.set()
        done = await client.wait(job.job_id, timeout=10)
        assert done.status is JobStatus.succeeded and done.output["voiceprints"][0]["match"] == SECRET_USER
        assert _files(data) == [], "no job file and no media once the job ended"
        assert "voiceprints" not in store.jobs[job.job_id].request, "voiceprints wiped from memory too"
        assert engine.forgotten, "the server asks its engine to forget the inner job"

        await client.forget(job.job_id)
        with pytest.raises(JobNotFound):
            await client.get_job(job.job_id)
        await client.close()


async def test_a_voiceprint_output_stays_in_memory_only(tmp_path, clip):
    engine, data = GatedEngine(open_gate=True), tmp_path / "engine"
    async with engine_server(engine, data) as srv:
        client = client_for(srv)
        url = await client.upload(clip)
        job = await client.wait((await client.submit_voiceprint(VoiceprintRequest(url=url))).job_id, timeout=10)
        assert job.voiceprint_output().voiceprint == OUTPUT_VOICEPRINT
        assert _files(data) == [] and _disk_holds(data, OUTPUT_VOICEPRINT) == []
        await client.close()


async def test_release_deletes_media_after_a_failed_submit_and_delete_answers_as_documented(tmp_path, clip):
    engine, data = GatedEngine(), tmp_path / "engine"
    async with engine_server(engine, data) as srv, ClientSession() as http:
        client = client_for(srv)
        store = srv.app[ENGINE_SERVER].store
        url = await client.upload(clip)
        assert store.media_path(url).is_file()
        try:
            with pytest.raises(RequestError):  # refused after the upload: no webhook secret on this server
                await client.submit_voiceprint(VoiceprintRequest(url=url, webhook="http://127.0.0.1:1/hook"))
        finally:
            await client.release(url)
        assert _files(data) == [], "the upload of a refused job must not outlive it"

        auth = {"Authorization": f"Bearer {API_KEY}"}
        used = await client.upload(clip)
        running = await client.submit_identify(_identify(used))
        await _until(lambda: engine.identify_requests)  # the runner is inside the job, its inner job submitted
        key = used[len("media://"):]
        async with http.delete(srv.make_url(f"/v1/media/{key}"), headers=auth) as resp:
            assert resp.status == 409, "media of an unfinished job stays until the job ends"
        async with http.delete(srv.make_url("/v1/media/never-uploaded.wav"), headers=auth) as resp:
            assert resp.status == 204
        for unauthenticated in ("/v1/media/x.wav", "/v1/media/upload/x.wav"):  # the upload URL's exemption is PUT only
            async with http.delete(srv.make_url(unauthenticated)) as resp:
                assert resp.status == 401
        async with http.delete(srv.make_url("/v1/jobs/no-such-job"), headers=auth) as resp:
            assert resp.status == 404

        await client.forget(running.job_id)  # deleting an unfinished job drops it, its media and voiceprints
        assert _files(data) == []
        with pytest.raises(JobNotFound):
            await client.get_job(running.job_id)
        engine.gate.set()
        # The server runs one job at a time: once a job submitted after it has ended, the runner has finished
        # the deleted job's inner job too (and discarded its result).
        after = await client.wait((await client.submit_voiceprint(VoiceprintRequest(url=await client.upload(clip))))
                                  .job_id, timeout=10)
        assert after.status is JobStatus.succeeded and "inner-0" in engine.forgotten
        assert running.job_id not in store.jobs and _files(data) == []
        await client.close()


async def test_after_a_restart_an_unfinished_identify_job_is_forgotten_with_its_media(tmp_path, clip):
    data = tmp_path / "engine"
    engine = GatedEngine()
    async with engine_server(engine, data) as srv:
        client = client_for(srv)
        url = await client.upload(clip)
        job = await client.submit_identify(_identify(url))
        await _until(lambda: engine.identify_requests)
        await client.close()
    assert _disk_holds(data, SECRET_VOICEPRINT, SECRET_USER) == []

    async with engine_server(GatedEngine(open_gate=True), data) as srv:
        client = client_for(srv)
        with pytest.raises(JobNotFound):  # the bot resubmits on 404
            await client.get_job(job.job_id)
        assert _files(data) == []
        await client.close()


async def test_old_finished_job_files_and_corrupt_ones_do_not_stay(tmp_path):
    store = ServerStore(tmp_path)
    finished = JobRecord(job=Job(job_id="old", status=JobStatus.succeeded, output={"voiceprint": OUTPUT_VOICEPRINT}),
                         kind="voiceprint", request={"url": "media://a"}, media_key="media://a")
    (store.jobs_dir / "old.json").write_text(finished.model_dump_json(by_alias=True))  # as older versions kept it
    (store.jobs_dir / "bad.json").write_text("{not json")
    (store.jobs_dir / "half.json.tmp").write_text("{")
    assert store.load() == []
    assert sorted(p.name for p in store.jobs_dir.iterdir()) == ["bad.corrupt"]
    assert await store.sweep(media_ttl_s=3600, job_ttl_s=3600) == (0, 0)
    assert await store.sweep(media_ttl_s=3600, job_ttl_s=3600, now=time.time() + 3601) == (0, 1)
    assert list(store.jobs_dir.iterdir()) == []
