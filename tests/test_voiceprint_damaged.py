"""Damaged voiceprint strings (odd length, wrong version, cut or altered anywhere) are a VoiceprintError with a
clear message naming the label, never a bare ValueError: in the string codec and through the engine server."""
from __future__ import annotations

import base64
import random

import numpy as np
import pytest

from bot.errors import VoiceprintError
from bot.schema import IdentifyRequest, JobStatus, VoiceprintInput
from bot.speech import voiceprint
from bot.speech.windows import EMBEDDING_MODEL
from tests.engine_http_support import client_for, engine_server

GOOD = voiceprint.encode(np.random.default_rng(3).normal(size=192), EMBEDDING_MODEL)


def raw_of(text: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def text_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def odd_byte_count() -> str:
    return text_of(raw_of(GOOD)[:-1])


def wrong_version() -> str:
    raw = raw_of(GOOD)
    raw[3] = 2
    return text_of(raw[:-1])


@pytest.mark.parametrize(("text", "says"), [
    (GOOD[:-1], "damaged"),                 # one character short: an odd number of vector bytes
    (GOOD + "A", "damaged"),                # one too many: not a possible base64 length
    (odd_byte_count(), "damaged"),
    (text_of(raw_of(GOOD) + b"\x00"), "damaged"),
    (wrong_version(), "format version 2"),
    (text_of(b"VID"), "damaged"),
    (text_of(b"VID\x01"), "damaged"),
    (GOOD[:40] + "é" + GOOD[41:], "damaged"),
    (GOOD[:40] + "!" + GOOD[41:], "damaged"),
    ("", "not made by this engine"),
], ids=["one-char-short", "one-char-long", "odd-bytes", "extra-byte", "wrong-version", "magic-only",
        "no-fields", "non-ascii", "stray-char", "empty"])
def test_damaged_strings_are_voiceprint_errors_naming_the_label(text: str, says: str):
    with pytest.raises(VoiceprintError) as err:
        voiceprint.decode_compatible(text, EMBEDDING_MODEL, label="Ann")
    assert says in err.value.message and "Ann" in err.value.message
    assert err.value.code == "incompatible_voiceprint"


def test_every_cut_and_many_random_alterations_give_a_voiceprint_or_a_voiceprint_error():
    rng = random.Random(11)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ "
    damaged = [GOOD[:n] for n in range(len(GOOD))]
    for _ in range(400):
        chars = list(GOOD)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice(alphabet)
        damaged.append("".join(chars))
    for text in damaged:
        try:
            voiceprint.decode(text)
        except VoiceprintError as exc:
            assert exc.message
        # anything else (ValueError, IndexError…) fails the test


def test_not_a_string_is_a_voiceprint_error():
    with pytest.raises(VoiceprintError, match="damaged"):
        voiceprint.decode(None)  # type: ignore[arg-type]


@pytest.mark.asyncio(loop_scope="module")
async def test_engine_server_fails_the_job_with_the_clear_reason(local_engine, tmp_path):
    """Through the engine server's HTTP API: an identify request with an odd-length voiceprint fails as
    `incompatible_voiceprint` naming the person, not as an engine crash."""
    import soundfile as sf

    media = tmp_path / "meeting.wav"
    sf.write(str(media), np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    async with engine_server(local_engine, tmp_path / "engine") as srv:
        client = client_for(srv)
        try:
            url = await client.upload(media)
            job = await client.submit_identify(IdentifyRequest(
                url=url, voiceprints=[VoiceprintInput(label="Ann", voiceprint=GOOD[:-1])]))
            done = await client.wait(job.job_id, poll=0.1, timeout=300)
        finally:
            await client.close()
    assert done.status is JobStatus.failed
    assert done.error.code == "incompatible_voiceprint", done.error
    assert "Ann" in done.error.message and "damaged" in done.error.message
