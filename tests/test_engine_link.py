"""The engine link carries the API key, voiceprints and audio: https (or this machine) only, no redirects followed,
upload URLs the server builds itself, status-only webhooks and a media key per upload. The TLS test runs the real
`python -m bot engine-server` with a certificate made for the test and the bot's client trusting its private CA."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from bot.config import Settings
from bot.engine_server.app import ENGINE_SERVER
from bot.engines.http import HTTPEngine, RetryPolicy
from bot.engines.webhooks import send_webhook
from bot.errors import EngineError, EngineUnavailable
from bot.schema import DiarizeRequest, IdentifyRequest, VoiceprintInput, VoiceprintRequest
from tests.engine_http_support import client_for, engine_server
from tests.process_support import ENGINE_API_KEY, child_env, free_port, start, stop

in_module_loop = pytest.mark.asyncio(loop_scope="module")
VOICEPRINTS = [VoiceprintInput(label="alice", voiceprint="QUJD")]


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def refusal(**values) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    return "; ".join(e["msg"] for e in caught.value.errors())


def test_plain_http_to_another_machine_is_refused_naming_the_setting():
    secret = "engine-key-never-shown-0123"
    message = refusal(engine="server", engine_url="http://engine-host:8100", engine_api_key=secret)
    assert "ENGINE_URL" in message and "ALLOW_INSECURE_HTTP" in message and "https" in message
    assert secret not in message and "engine-host" not in message
    assert "PUBLIC_BASE_URL" in refusal(public_base_url="http://bot.example.com")
    assert "PYANNOTEAI_API_URL" in refusal(pyannoteai_api_url="http://api.pyannote.ai")
    assert "SLACK_API_URL" in refusal(slack_api_url="http://slack.example.gov/api/")  # the bot token goes there
    assert "ENGINE_URL" in refusal(engine_url="http://engine.localhost:8100")  # a name DNS may answer for
    assert "ENGINE_URL must be an https:// URL" in refusal(engine_url="engine-host:8100")
    for local in ("http://127.0.0.1:8100", "http://localhost:8100", "http://[::1]:8100", "https://engine-host"):
        assert settings(engine_url=local, public_base_url=local).engine_url == local
    assert settings(engine_url="http://engine-host:8100", allow_insecure_http=True).allow_insecure_http
    with pytest.raises(ValueError, match="ENGINE_URL uses plain http"):
        HTTPEngine("http://engine-host:8100", "k", engine_id="server", name="the engine server",
                   recommended_threshold=50, url_setting="ENGINE_URL")


def test_tls_settings_go_together_and_name_files_that_exist(tmp_path):
    assert "set both" in refusal(engine_tls_cert=str(tmp_path / "x"))
    assert "ENGINE_CA_FILE names no readable file" in refusal(engine_ca_file=str(tmp_path / "missing.pem"))


class Capture:
    """A server that records every request it receives: where a redirect would send the body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.method, request.path, await request.read()))
        return web.json_response({"jobId": "stolen", "status": "created", "url": "http://127.0.0.1:1/x"})


async def started(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@in_module_loop
async def test_api_calls_never_follow_a_redirect(tmp_path):
    capture = Capture()
    capture_app = web.Application()
    capture_app.add_routes([web.route("*", "/{tail:.*}", capture.handle)])
    elsewhere = await started(capture_app)

    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPTemporaryRedirect(str(elsewhere.make_url(request.path)))

    stub_app = web.Application()
    stub_app.add_routes([web.route("*", "/{tail:.*}", redirect)])
    stub = await started(stub_app)
    engine = HTTPEngine(str(stub.make_url("")), "the-api-key", engine_id="server", name="the engine server",
                        recommended_threshold=50, url_setting="ENGINE_URL", retry=RetryPolicy(attempts=2))
    media = tmp_path / "clip.wav"
    media.write_bytes(b"RIFF audio")
    try:
        with pytest.raises(EngineError, match="redirect \\(HTTP 307\\).*ENGINE_URL"):
            await engine.submit_identify(IdentifyRequest(url="media://x", voiceprints=VOICEPRINTS))
        with pytest.raises(EngineError, match="redirect"):
            await engine.get_job("any")
        with pytest.raises(EngineError, match="redirect"):
            await engine.upload(media)
        # The engine server's own webhook sender (a job's result, signed) does not follow one either.
        async with ClientSession() as session:
            assert not await send_webhook(session, str(stub.make_url("/hook")), {"jobId": "j", "output": "x"},
                                          "webhook-secret", retry_delays=())
        # Each call has returned: a followed redirect would have reached the capture server within it.
        assert capture.received == [], "the body (voiceprints, key) went to the redirect's target"
    finally:
        await engine.close()
        await stub.close()
        await elsewhere.close()


@in_module_loop
async def test_an_upload_url_in_plain_http_to_another_machine_is_refused(tmp_path):
    async def media_input(request: web.Request) -> web.Response:
        return web.json_response({"url": "http://storage.example.com/put?token=t"}, status=201)

    app = web.Application()
    app.add_routes([web.post("/v1/media/input", media_input)])
    stub = await started(app)
    engine = HTTPEngine(str(stub.make_url("")), "k", engine_id="server", name="the engine server",
                        recommended_threshold=50, retry=RetryPolicy(attempts=1))
    media = tmp_path / "clip.wav"
    media.write_bytes(b"RIFF audio")
    try:
        with pytest.raises(EngineError, match="PUBLIC_BASE_URL") as caught:
            await engine.upload(media)
        assert "token" not in str(caught.value)
    finally:
        await engine.close()
        await stub.close()


@in_module_loop
async def test_submitted_jobs_ask_for_status_only_webhooks():
    bodies: dict[str, dict] = {}

    async def submit(request: web.Request) -> web.Response:
        bodies[request.path] = await request.json()
        return web.json_response({"jobId": "j", "status": "created"})

    app = web.Application()
    app.add_routes([web.post(p, submit) for p in ("/v1/voiceprint", "/v1/identify", "/v1/diarize")])
    stub = await started(app)
    cloud = HTTPEngine(str(stub.make_url("")), "k", engine_id="pyannoteai", name="pyannoteAI",
                       recommended_threshold=50, webhook_url="https://bot.example.com/engine/webhook")
    try:
        await cloud.submit_voiceprint(VoiceprintRequest(url="media://a"))
        await cloud.submit_identify(IdentifyRequest(url="media://a", voiceprints=VOICEPRINTS))
        await cloud.submit_diarize(DiarizeRequest(url="media://a"))
    finally:
        await cloud.close()
        await stub.close()
    assert {path: (b["webhook"], b["webhookStatusOnly"]) for path, b in bodies.items()} == {
        path: ("https://bot.example.com/engine/webhook", True)
        for path in ("/v1/voiceprint", "/v1/identify", "/v1/diarize")}


@in_module_loop
async def test_every_upload_gets_its_own_media_key(local_engine, tmp_path):
    """A cancelled attempt releasing its media must not delete what the attempt taking over uploaded."""
    media = tmp_path / "meeting.wav"
    media.write_bytes(b"RIFF audio")
    async with engine_server(local_engine, tmp_path / "data") as srv:
        client = client_for(srv)
        try:
            cancelled = await client.upload(media, key="T1-F1")
            taking_over = await client.upload(media, key="T1-F1")
            assert cancelled != taking_over and "T1-F1" in taking_over
            await client.release(cancelled)
            assert srv.app[ENGINE_SERVER].store.media_meta(taking_over) is not None
        finally:
            await client.close()
    first, second = await local_engine.upload(media, key="T1-F1"), await local_engine.upload(media, key="T1-F1")
    await local_engine.release(first)
    assert local_engine.resolve(second) == media.resolve()
    await local_engine.release(second)


def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for localhost and 127.0.0.1: (ca.pem, server chain, server key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Voice ID test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def https_client(url: str, ca_file: Path | None) -> HTTPEngine:
    return HTTPEngine(url, ENGINE_API_KEY, engine_id="server", name="the engine server", recommended_threshold=50,
                      url_setting="ENGINE_URL", ca_file=ca_file, retry=RetryPolicy(attempts=1))


async def wait_https_ready(client: HTTPEngine, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until the engine server answers over TLS (it listens once its models are loaded)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "the engine server exited"
        if await client.ready() is None:
            return
        assert time.monotonic() < deadline, "the engine server never answered over https"
        await asyncio.sleep(0.3)


@in_module_loop
async def test_the_engine_server_process_serves_tls_and_builds_upload_urls_from_its_public_url(tmp_path):
    ca, chain, key = write_certificates(tmp_path)
    port = free_port()
    public = f"https://localhost:{port}"
    env = child_env(tmp_path, ENGINE_TLS_CERT=str(chain), ENGINE_TLS_KEY=str(key), PUBLIC_BASE_URL=public,
                    ENGINE_DATA_DIR=str(tmp_path / "engine"), ENGINE_WORKERS="1")
    proc = start(["engine-server", "--port", str(port)], env, tmp_path / "engine-server.log")
    trusting, untrusting = https_client(public, ca), https_client(public, None)
    try:
        await wait_https_ready(trusting, proc)
        with pytest.raises(EngineUnavailable, match="Certificate"):
            await untrusting.get_job("probe")  # the system's CAs do not vouch for it
        context = ssl.create_default_context(cafile=str(ca))
        auth = {"Authorization": f"Bearer {ENGINE_API_KEY}"}
        async with (ClientSession() as http,
                    http.post(f"https://127.0.0.1:{port}/v1/media/input", json={"url": "media://x/a.wav"},
                              headers=auth | {"Host": "evil.example.com"}, ssl=context) as resp):
            assert resp.status == 201
            assert (await resp.json())["url"].startswith(f"{public}/v1/media/upload/"), \
                "the upload URL followed a forged Host header"
        media = tmp_path / "clip.wav"
        media.write_bytes(b"RIFF audio")
        url = await trusting.upload(media, key="T1-F1")
        stored = list((tmp_path / "engine").rglob("*"))
        assert any(p.is_file() and p.read_bytes() == b"RIFF audio" for p in stored), "the upload did not arrive"
        await trusting.release(url)
    finally:
        await trusting.close()
        await untrusting.close()
        stop(proc)


def test_the_engine_server_listens_on_this_machine_by_default_and_refuses_plain_http_on_others(tmp_path):
    import argparse

    from bot.commands.engine_server import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    assert parser.parse_args([]).host == "127.0.0.1"
    log = tmp_path / "engine-server.log"
    proc = start(["engine-server", "--host", "0.0.0.0", "--port", str(free_port())], child_env(tmp_path), log)
    try:
        assert proc.wait(120) == 2
    finally:
        stop(proc)
    said = log.read_text()
    assert "ENGINE_TLS_CERT" in said and "ALLOW_INSECURE_HTTP" in said and ENGINE_API_KEY not in said
