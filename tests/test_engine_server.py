"""The engine server itself: auth, one-time upload URLs, restart recovery, media deletion, signed webhooks."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import ClientSession
from yarl import URL

from bot.engine_server.app import ENGINE_SERVER, ServerLimits, field_errors, retry_after_s
from bot.engine_server.store import JobRecord, ServerStore
from bot.schema import JobStatus, VoiceprintRequest
from tests.engine_http_support import (
    API_KEY,
    client_for,
    engine_server,
    needs_speech,
    utterance,
    webhook_receiver,
)

in_module_loop = pytest.mark.asyncio(loop_scope="module")

WEBHOOK_SECRET = "server-webhook-secret"


def test_retry_after_grows_with_the_queue_and_stays_bounded():
    assert retry_after_s(0, 2, 0.1) == 1
    assert retry_after_s(3, 2, 10) == 20
    assert retry_after_s(10_000, 1, 60) == 600


def test_field_errors_use_wire_names():
    from pydantic import ValidationError

    from bot.schema import IdentifyRequest

    with pytest.raises(ValidationError) as err:
        IdentifyRequest.model_validate({"url": "media://a", "voiceprints": [{"label": "SPEAKER_01",
                                                                             "voiceprint": "x"}],
                                        "minSpeakers": 0})
    fields = {e["field"] for e in field_errors(err.value)}
    assert fields == {"voiceprints.0.label", "minSpeakers"}


@in_module_loop
async def test_sweep_deletes_unused_media_after_the_ttl_and_old_finished_jobs(tmp_path):
    store = ServerStore(tmp_path)

    async def chunks():
        yield b"RIFF...."

    await store.write_media("media://old", chunks(), limit=100)
    assert await store.sweep(media_ttl_s=3600, job_ttl_s=3600) == (0, 0)
    assert await store.sweep(media_ttl_s=3600, job_ttl_s=3600, now=time.time() + 3601) == (1, 0)
    assert not store.media_path("media://old").exists()
    assert list(store.media_dir.iterdir()) == []


@in_module_loop
async def test_auth_upload_url_and_media_key_rules(local_engine, tmp_path):
    async with engine_server(local_engine, tmp_path) as srv, ClientSession() as http:
        async with http.get(srv.make_url("/v1/test")) as resp:
            assert resp.status == 401
            assert "ENGINE_API_KEY" in (await resp.json())["message"]
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with http.get(srv.make_url("/v1/test"), headers=auth) as resp:
            assert resp.status == 200
        for traversal in ("media://../etc/passwd", "media://a/../../etc/passwd", "media:///etc/passwd",
                          "media://./x", "media://a//b"):  # each refused for its path segments, not a character
            async with http.post(srv.make_url("/v1/media/input"), json={"url": traversal}, headers=auth) as resp:
                assert resp.status == 400, traversal
                [error] = (await resp.json())["errors"]
                assert error["field"] == "url" and "'..'" in error["message"], (traversal, error)
        for encoded in ("media://%2e%2e/etc/passwd", "media://..%2fetc%2fpasswd"):  # never decoded: refused as is
            async with http.post(srv.make_url("/v1/media/input"), json={"url": encoded}, headers=auth) as resp:
                assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "url", encoded
        for encoded in ("..%2Fetc%2Fpasswd", "%2E%2E%2Fetc%2Fpasswd", "a%2F..%2F..%2Fetc%2Fpasswd"):
            # aiohttp decodes the path parameter: the key the server checks is the traversal itself
            async with http.delete(URL(f"{srv.make_url('/v1/media')}/{encoded}", encoded=True),
                                   headers=auth) as resp:
                assert resp.status == 400, encoded
                [error] = (await resp.json())["errors"]
                assert error["field"] == "key" and "'..'" in error["message"], (encoded, error)
        async with http.post(srv.make_url("/v1/media/input"), json={"url": "media://etc/passwd"},
                             headers=auth) as resp:
            assert resp.status == 201, "the same characters without the traversal are a key like any other"
        async with http.post(srv.make_url("/v1/media/input"), data=b"{not json", headers=auth) as resp:
            assert resp.status == 400
        async with http.post(srv.make_url("/v1/media/input"), json={"url": "media://a/b.wav"},
                             headers=auth) as resp:
            assert resp.status == 201
            upload = (await resp.json())["url"]
        assert upload.startswith(str(srv.make_url("/v1/media/upload/")))
        async with http.post(srv.make_url("/v1/media/input"), json={"url": "media://a/c.wav"},
                             headers=auth | {"Host": "evil.example.com"}) as resp:
            steered = (await resp.json())["url"]  # without PUBLIC_BASE_URL: the address it came to, not Host
        assert steered.startswith(str(srv.make_url("/v1/media/upload/"))), steered
        async with http.put(upload, data=b"bytes") as resp:
            assert resp.status == 200
        async with http.put(upload, data=b"again") as resp:
            assert resp.status == 403, "an upload URL works once"
        async with http.post(srv.make_url("/v1/voiceprint"), json={"url": "media://a/b.wav",
                                                                   "webhook": "http://127.0.0.1:1/hook"},
                             headers=auth) as resp:
            assert resp.status == 400, "no webhook secret configured: webhooks could not be signed"
            assert (await resp.json())["errors"][0]["field"] == "webhook"


@needs_speech
@pytest.mark.speech
@in_module_loop
async def test_webhook_from_the_server_is_signed_and_status_only_unless_asked_otherwise(local_engine, tmp_path):
    async with (webhook_receiver(WEBHOOK_SECRET) as hook,
                engine_server(local_engine, tmp_path, webhook_secret=WEBHOOK_SECRET) as srv):
        client = client_for(srv)
        client.webhook_url = hook.url  # the bot's: status only, so no voiceprint is pushed to a public URL
        url = await client.upload(utterance("2414", 1))
        job = await client.submit_voiceprint(VoiceprintRequest(url=url))
        await asyncio.wait_for(hook.arrived.wait(), timeout=300)
        polled = await client.get_job(job.job_id)
        assert [(j.job_id, j.status, j.output) for j in hook.received] == [(job.job_id, JobStatus.succeeded, None)]
        assert polled.voiceprint_output().voiceprint
        hook.arrived.clear()
        url = await client.upload(utterance("2414", 1))  # a caller's own webhook gets what it asks for
        job = await client.submit_voiceprint(VoiceprintRequest(url=url, webhook=hook.url))
        await asyncio.wait_for(hook.arrived.wait(), timeout=300)
        assert hook.received[-1].job_id == job.job_id
        assert hook.received[-1].output == (await client.get_job(job.job_id)).output
        await client.close()


async def _wait_status(store: ServerStore, job_id: str, status: JobStatus, timeout: float = 60) -> None:
    """Until the job has `status` in memory and in its file (written just after: a loaded machine shows the gap)."""
    deadline = time.monotonic() + timeout

    def on_disk() -> JobStatus | None:
        path = store.jobs_dir / f"{job_id}.json"  # written atomically (rename), so never half a file
        return JobRecord.model_validate_json(path.read_bytes()).job.status if path.exists() else None

    while store.jobs[job_id].job.status is not status or on_disk() is not status:
        assert time.monotonic() < deadline, f"job never reached {status.value}"
        await asyncio.sleep(0.02)


@needs_speech
@pytest.mark.speech
@in_module_loop
async def test_a_restart_reruns_unfinished_jobs_or_fails_them_with_a_reason(local_engine, tmp_path):
    data = tmp_path / "engine"
    async with engine_server(local_engine, data) as srv:
        client = client_for(srv)
        kept = await client.upload(utterance("2609", 1))
        lost = await client.upload(utterance("2609", 2))
        running = await client.submit_voiceprint(VoiceprintRequest(url=kept))
        waiting = await client.submit_voiceprint(VoiceprintRequest(url=lost))
        store = srv.app[ENGINE_SERVER].store
        await _wait_status(store, running.job_id, JobStatus.running)
        await client.close()
    # The server stopped mid-job: on disk the first job is still `running`, the second `created`.
    stopped = ServerStore(data)
    stopped.load()
    assert stopped.jobs[running.job_id].job.status is JobStatus.running
    stopped.delete_media(lost)  # e.g. the disk was replaced: this job cannot run again

    async with engine_server(local_engine, data, limits=ServerLimits()) as srv:
        client = client_for(srv)
        rerun = await client.wait(running.job_id, timeout=300)
        assert rerun.status is JobStatus.succeeded and rerun.voiceprint_output().voiceprint
        gone = await client.get_job(waiting.job_id)
        assert gone.status is JobStatus.failed
        assert gone.error.code == "media_lost" and "upload it" in gone.error.message
        assert list(srv.app[ENGINE_SERVER].store.media_dir.iterdir()) == []
        await client.close()
