"""The diarize-only job (`POST /v1/diarize`): who spoke when for a recording where nobody is enrolled, with
overlapped speech, in-process and through the engine server giving the same answer."""
from __future__ import annotations

import pytest
import pytest_asyncio
from pydantic import ValidationError

from bench import meetings
from bot.engines.base import Engine
from bot.errors import RequestError
from bot.schema import DiarizeRequest, JobStatus
from tests.engine_http_support import client_for, engine_server, needs_speech

in_module_loop = pytest.mark.asyncio(loop_scope="module")


def test_diarize_request_checks_the_speaker_counts():
    with pytest.raises(ValidationError):
        DiarizeRequest(url="media://x", min_speakers=3, max_speakers=2)
    assert DiarizeRequest(url="media://x", exclusive=True).wire()["exclusive"] is True


async def test_an_engine_without_diarize_refuses_it_as_a_bad_request():
    class Minimal(Engine):
        recommended_threshold = 50.0

        async def upload(self, path, key=None): ...
        async def submit_voiceprint(self, request): ...
        async def submit_identify(self, request): ...
        async def get_job(self, job_id): ...

    with pytest.raises(RequestError):
        await Minimal().submit_diarize(DiarizeRequest(url="media://x"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(local_engine, tmp_path_factory):
    async with engine_server(local_engine, tmp_path_factory.mktemp("engine-data")) as srv:
        yield srv


async def _diarize(engine, path):
    url = await engine.upload(path)
    job = await engine.wait((await engine.submit_diarize(DiarizeRequest(url=url, exclusive=True))).job_id,
                            timeout=600)
    await engine.release(url)
    assert job.status is JobStatus.succeeded, job.output
    return job.diarize_output()


def _overlapping(segments) -> float:
    return sum(max(0.0, min(a.end, b.end) - max(a.start, b.start))
               for i, a in enumerate(segments) for b in segments[i + 1:] if a.speaker != b.speaker)


@needs_speech
@pytest.mark.speech
@in_module_loop
async def test_diarize_job_finds_overlap_and_the_server_gives_the_same(local_engine, server, tmp_path):
    meeting = meetings.libri_meeting(seed=5, minutes=0.75)
    path = meetings.write_wav(tmp_path / "mix.wav", meeting.samples)
    local = await _diarize(local_engine, path)
    client = client_for(server)
    over_http = await _diarize(client, path)
    await client.close()
    assert over_http.wire() == local.wire()
    assert len({s.speaker for s in local.diarization}) >= 3
    assert _overlapping(local.diarization) > 1.0, "overlapped speech gives two speakers at once"
    assert local.exclusive_diarization and _overlapping(local.exclusive_diarization) == 0
