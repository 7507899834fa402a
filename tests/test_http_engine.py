"""The HTTP engine client against a real engine server on 127.0.0.1 running the real local engine.

The round trip must give exactly what the local engine gives in-process (ENGINE=local vs ENGINE=server).
Only HTTP 402, which only pyannoteAI's cloud produces, comes from a small stub answering as its docs say.
"""
from __future__ import annotations

import asyncio
import socket

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.engine_server.app import ENGINE_SERVER, ServerLimits
from bot.engines.http import HTTPEngine, RetryPolicy
from bot.errors import (
    AuthError,
    EngineUnavailable,
    JobNotFound,
    MediaError,
    PaymentRequired,
    RateLimited,
    RequestError,
)
from bot.schema import IdentifyRequest, JobStatus, Matching, VoiceprintInput, VoiceprintRequest
from tests.engine_http_support import (
    API_KEY,
    GatedEngine,
    client_for,
    engine_server,
    needs_speech,
    utterance,
    write_meeting,
)

in_module_loop = pytest.mark.asyncio(loop_scope="module")

ALICE, BOB = ("1998", 1), ("1688", 3)  # enrollment utterances (6 s, 5 s); the meeting uses other ones
MEETING = [("1998", 2), ("1688", 4), ("1998", 3), ("1688", 6)]  # about 30 s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(local_engine, tmp_path_factory):
    async with engine_server(local_engine, tmp_path_factory.mktemp("engine-data")) as srv:
        yield srv


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(server):
    engine = client_for(server)
    yield engine
    await engine.close()


async def _voiceprint(engine, path) -> str:
    url = await engine.upload(path)
    job = await engine.wait((await engine.submit_voiceprint(VoiceprintRequest(url=url))).job_id, timeout=300)
    await engine.release(url)
    assert job.status is JobStatus.succeeded, job.output
    return job.voiceprint_output().voiceprint


async def _identify(engine, path, voiceprints: dict[str, str]):
    url = await engine.upload(path)
    request = IdentifyRequest(url=url, voiceprints=[VoiceprintInput(label=k, voiceprint=v)
                                                    for k, v in voiceprints.items()],
                              matching=Matching(threshold=engine.recommended_threshold), max_speakers=4)
    job = await engine.wait((await engine.submit_identify(request)).job_id, timeout=600)
    await engine.release(url)
    assert job.status is JobStatus.succeeded, job.output
    return job.identify_output()


@needs_speech
@pytest.mark.speech
@in_module_loop
async def test_round_trip_over_http_equals_the_local_engine(client, local_engine, server, tmp_path):
    meeting = write_meeting(tmp_path / "meeting.wav", MEETING)
    over_http = {"Alice": await _voiceprint(client, utterance(*ALICE)),
                 "Bob": await _voiceprint(client, utterance(*BOB))}
    in_process = {"Alice": await _voiceprint(local_engine, utterance(*ALICE)),
                  "Bob": await _voiceprint(local_engine, utterance(*BOB))}
    assert over_http == in_process

    client_out = await _identify(client, meeting, over_http)
    local_out = await _identify(local_engine, meeting, in_process)
    # The same result, each with the threshold it was asked for: the server reports what its engine applied.
    assert client_out.provenance.threshold == client.recommended_threshold
    assert local_out.provenance.threshold == local_engine.recommended_threshold
    assert client_out.provenance.pipeline == local_out.provenance.pipeline == local_engine.diarization
    unstamped = {"provenance": None}
    assert client_out.model_copy(update=unstamped).wire() == local_out.model_copy(update=unstamped).wire()
    assert {s.match for s in client_out.voiceprints} == {"Alice", "Bob"}
    data_dir = server.app[ENGINE_SERVER].store.media_dir
    assert [p.name for p in data_dir.iterdir()] == [], "media must be deleted once their jobs end"


@in_module_loop
async def test_a_job_that_fails_reports_failed_with_the_reason(client, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are meeting notes, not a recording\n" * 50)
    url = await client.upload(not_audio)
    job = await client.wait((await client.submit_voiceprint(VoiceprintRequest(url=url))).job_id, timeout=120)
    assert job.status is JobStatus.failed
    assert job.error is not None and job.error.code != "internal_error" and "audio" in job.error.message.lower()


@in_module_loop
async def test_bad_key_is_an_auth_error_naming_the_setting(server, tmp_path):
    engine = client_for(server, api_key="wrong-key")
    (tmp_path / "clip.wav").write_bytes(b"RIFF")  # refused before any byte of it is read
    with pytest.raises(AuthError, match="ENGINE_API_KEY"):
        await engine.upload(tmp_path / "clip.wav")
    await engine.close()


@in_module_loop
async def test_bad_fields_are_a_request_error_listing_them(client):
    bad = IdentifyRequest.model_construct(url="media://never-uploaded", voiceprints=[],
                                          matching=Matching.model_construct(exclusive=True, threshold=300))
    with pytest.raises(RequestError) as err:
        await client.submit_identify(bad)
    fields = {e["field"] for e in err.value.errors}
    assert {"voiceprints", "matching.threshold"} <= fields, err.value.errors
    assert "voiceprints" in err.value.message
    with pytest.raises(RequestError, match="upload it first"):
        await client.submit_voiceprint(VoiceprintRequest(url="media://never-uploaded"))


@in_module_loop
async def test_unknown_job_is_job_not_found(client):
    with pytest.raises(JobNotFound):
        await client.get_job("00000000-0000-0000-0000-000000000000")


@needs_speech
@pytest.mark.speech
@in_module_loop
async def test_oversize_upload_and_oversize_voiceprint_input_are_refused(local_engine, tmp_path):
    clip = utterance(*ALICE)
    size = clip.stat().st_size
    limits = ServerLimits(identify_max_bytes=size - 1, voiceprint_max_bytes=size // 2)
    async with engine_server(local_engine, tmp_path / "small", limits=limits) as srv:
        engine = client_for(srv)
        with pytest.raises(MediaError, match="413") as err:
            await engine.upload(clip)
        assert err.value.code == "too_large"
        await engine.close()
    limits = ServerLimits(voiceprint_max_bytes=size // 2)
    async with engine_server(local_engine, tmp_path / "vp", limits=limits) as srv:
        engine = client_for(srv)
        url = await engine.upload(clip)
        with pytest.raises(MediaError, match="413"):
            await engine.submit_voiceprint(VoiceprintRequest(url=url))
        await engine.close()


@needs_speech
@pytest.mark.speech
@in_module_loop
async def test_full_queue_answers_429_with_retry_after(local_engine, tmp_path):
    engine = GatedEngine(local_engine)  # the first two jobs cannot finish until the gate opens
    async with engine_server(engine, tmp_path / "busy", limits=ServerLimits(queue_size=1), workers=1) as srv:
        impatient = client_for(srv, attempts=1)
        urls = [await impatient.upload(utterance("2033", i)) for i in (1, 3, 9)]  # 6–7 s each
        first = [await impatient.submit_voiceprint(VoiceprintRequest(url=u)) for u in urls[:2]]
        with pytest.raises(RateLimited) as err:
            await impatient.submit_voiceprint(VoiceprintRequest(url=urls[2]))
        assert err.value.retry_after is not None and err.value.retry_after >= 1
        engine.gate.set()
        patient = HTTPEngine(str(srv.make_url("")), API_KEY, engine_id="server", name="the engine server",
                             recommended_threshold=50, retry=RetryPolicy(attempts=30, max_retry_after_s=2))
        third = await patient.submit_voiceprint(VoiceprintRequest(url=urls[2]))
        for job in [*first, third]:
            assert (await patient.wait(job.job_id, timeout=300)).status is JobStatus.succeeded
        await impatient.close()
        await patient.close()


@in_module_loop
async def test_402_from_the_cloud_is_payment_required(tmp_path):
    async def identify(request: web.Request) -> web.Response:
        return web.json_response({"requestId": "req-1", "message": "No active subscription or credits"},
                                 status=402)

    app = web.Application()
    app.add_routes([web.post("/v1/identify", identify)])
    stub = TestServer(app, host="127.0.0.1")
    await stub.start_server()
    cloud = HTTPEngine(str(stub.make_url("")), "key", engine_id="pyannoteai", name="pyannoteAI", recommended_threshold=50)
    request = IdentifyRequest(url="media://x", voiceprints=[VoiceprintInput(label="Alice", voiceprint="AAA")])
    with pytest.raises(PaymentRequired, match="No active subscription"):
        await cloud.submit_identify(request)
    await cloud.close()
    await stub.close()


@in_module_loop
async def test_unreachable_engine_is_retried_then_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    engine = HTTPEngine(f"http://127.0.0.1:{port}", "key", engine_id="server", name="the engine server", recommended_threshold=50,
                        retry=RetryPolicy(attempts=3, base_delay_s=0.01), sleep=sleep)
    with pytest.raises(EngineUnavailable, match="after 3 tries"):
        await engine.get_job("any")
    assert len(sleeps) == 2
    await engine.close()


def test_factory_chooses_the_engine_by_setting():
    from bot.config import Settings
    from bot.engines.factory import EngineSettingsMissing, make_engine

    server = make_engine(Settings(_env_file=None, engine="server", engine_url="https://engine:8100",
                                  engine_api_key="k", public_base_url="https://bot.example.com",
                                  engine_webhook_secret="s"))
    assert isinstance(server, HTTPEngine) and server.base_url == "https://engine:8100"
    assert server.key_setting == "ENGINE_API_KEY" and server.webhook_url == "https://bot.example.com/engine/webhook"
    cloud = make_engine(Settings(_env_file=None, engine="pyannoteai", pyannoteai_api_key="k"))
    assert isinstance(cloud, HTTPEngine) and cloud.base_url == "https://api.pyannote.ai" and cloud.webhook_url is None
    assert "k" not in repr(cloud)
    with pytest.raises(EngineSettingsMissing, match="ENGINE_URL, ENGINE_API_KEY"):
        make_engine(Settings(_env_file=None, engine="server"))
