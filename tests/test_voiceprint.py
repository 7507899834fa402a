"""Voiceprints: the versioned string, and the clip rules on real speech (≤ 30 s, one voice, enough speech)."""
from __future__ import annotations

import base64

import numpy as np
import pytest
from engine_support import SR, needs_data, speaker_models, utterance

from bot.errors import MediaError, VoiceprintError
from bot.speech import voiceprint
from bot.speech.audio import Audio
from bot.speech.tasks import make_voiceprint
from bot.speech.windows import EMBEDDING_MODEL


def test_round_trip_is_compact_and_close():
    v = np.random.default_rng(1).normal(size=192).astype(np.float32)
    text = voiceprint.encode(v, EMBEDDING_MODEL)
    assert len(text) < 600 and "=" not in text
    back = voiceprint.decode_compatible(text, EMBEDDING_MODEL)
    assert float(back @ (v / np.linalg.norm(v))) > 0.9999


def test_other_model_is_refused_by_name():
    text = voiceprint.encode(np.ones(192), "some-other-model")
    with pytest.raises(VoiceprintError) as err:
        voiceprint.decode_compatible(text, EMBEDDING_MODEL, label="Alice")
    assert "Alice" in err.value.message and "some-other-model" in err.value.message
    assert err.value.code == "incompatible_voiceprint"


def test_other_engine_is_refused():
    text = voiceprint.encode(np.ones(192), EMBEDDING_MODEL, engine="another-engine")
    with pytest.raises(VoiceprintError, match="another-engine"):
        voiceprint.decode_compatible(text, EMBEDDING_MODEL)


def test_pyannoteai_voiceprint_is_refused():
    foreign = base64.b64encode(np.random.default_rng(2).normal(size=256).astype(np.float32).tobytes()).decode()
    with pytest.raises(VoiceprintError, match="not made by this engine"):
        voiceprint.decode_compatible(foreign.rstrip("="), EMBEDDING_MODEL, label="Bob")


def test_future_format_version_is_refused():
    raw = bytearray(base64.urlsafe_b64decode(voiceprint.encode(np.ones(192), EMBEDDING_MODEL) + "=="))
    raw[3] = 9
    text = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(VoiceprintError, match="format version 9"):
        voiceprint.decode(text)


def test_truncated_is_damaged():
    text = voiceprint.encode(np.ones(192), EMBEDDING_MODEL)
    with pytest.raises(VoiceprintError, match="damaged"):
        voiceprint.decode(text[:200])


# ---- the clip rules, on real speech ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def models():
    return speaker_models()


@needs_data
def test_one_reader_gives_a_voiceprint_close_to_their_other_speech(models):
    a = voiceprint.decode(make_voiceprint(models, Audio(utterance("1998", 0))).voiceprint).vector
    b = voiceprint.decode(make_voiceprint(models, Audio(utterance("1998", 2))).voiceprint).vector
    c = voiceprint.decode(make_voiceprint(models, Audio(utterance("2033", 0))).voiceprint).vector
    assert float(a @ b) > float(a @ c) + 0.2


@needs_data
def test_longer_than_30_s_is_refused(models):
    clip = np.concatenate([utterance("2609", i) for i in (2, 4, 7)])[: 42 * SR]
    with pytest.raises(MediaError) as err:
        make_voiceprint(models, Audio(clip))
    assert err.value.code == "too_long"
    assert err.value.message == "The clip is 42 s long; voiceprints take at most 30 s."


@needs_data
def test_too_little_speech_is_refused(models):
    with pytest.raises(MediaError) as err:
        make_voiceprint(models, Audio(utterance("1998", 0)[: int(2.5 * SR)]))
    assert err.value.code == "too_short" and "at least 3 s" in err.value.message
    padded = np.concatenate([np.zeros(4 * SR, np.float32), utterance("1998", 0)[: int(1.5 * SR)],
                             np.zeros(4 * SR, np.float32)])
    with pytest.raises(MediaError) as err:
        make_voiceprint(models, Audio(padded))
    assert err.value.code == "too_short" and "of speech was found" in err.value.message


@needs_data
def test_silence_is_refused(models):
    with pytest.raises(MediaError) as err:
        make_voiceprint(models, Audio(np.zeros(10 * SR, np.float32)))
    assert err.value.code == "silent"


@needs_data
def test_two_voices_are_refused(models):
    clip = np.concatenate([utterance("1998", 1)[: 6 * SR], utterance("2033", 3)[: 6 * SR]])
    with pytest.raises(MediaError) as err:
        make_voiceprint(models, Audio(clip))
    assert err.value.code == "multiple_speakers" and "one person speaking alone" in err.value.message
