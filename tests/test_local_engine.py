"""The speaker engine end to end on real speech: enroll, identify, unknown and absent people; the job engine
in its process pool; the command line contract."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_support import ROOT, SR, meetings, needs_data, speaker_models

from bot.engines.base import follow
from bot.errors import JobNotFound, MediaError, VoiceprintError
from bot.schema import (
    IdentifyOutput,
    IdentifyRequest,
    JobStatus,
    Matching,
    VoiceprintInput,
    VoiceprintRequest,
)
from bot.speech import tasks, voiceprint
from bot.speech.audio import Audio
from bot.speech.matching import RECOMMENDED_THRESHOLD

pytestmark = needs_data


@pytest.fixture(scope="module")
def meeting() -> meetings.Meeting:
    return meetings.libri_meeting(seed=3, minutes=2.0)


@pytest.fixture(scope="module")
def enrolled(meeting) -> list[VoiceprintInput]:
    models = speaker_models()
    return [VoiceprintInput(label=f"reader-{label}",
                            voiceprint=tasks.make_voiceprint(models, Audio(clip)).voiceprint)
            for label, clip in meeting.enrollment.items()]


@pytest.fixture(scope="module")
def identified(meeting, enrolled) -> IdentifyOutput:
    return tasks.identify(speaker_models(), Audio(meeting.samples), enrolled,
                             Matching(threshold=RECOMMENDED_THRESHOLD))


def test_enrolled_readers_are_named(meeting, identified):
    truth = _majority(meeting, identified)
    names = {v.speaker: v.match for v in identified.voiceprints}
    enrolled_present = [r for r in meeting.present if r not in meeting.unknown]
    assert len(enrolled_present) == 3
    for reader in enrolled_present:
        speakers = [s for s, r in truth.items() if r == reader]
        assert speakers, f"reader {reader} was not diarized"
        assert names[speakers[0]] == f"reader-{reader}"


def test_unknown_reader_stays_unknown(meeting, identified):
    truth = _majority(meeting, identified)
    (unknown,) = meeting.unknown
    theirs = [s for s, r in truth.items() if r == unknown]
    assert theirs, f"reader {unknown} (not enrolled) got no speaker of their own: {truth}"
    for spk in theirs:
        assert {v.speaker: v.match for v in identified.voiceprints}[spk] is None
        segs = [s for s in identified.identification if s.diarization_speaker == spk]
        assert segs and all(s.match is None and s.speaker == spk for s in segs)


def test_absent_voiceprints_match_nothing(meeting, identified):
    absent = {f"reader-{a}" for a in meeting.absent}
    assert len(absent) == 2
    assert not absent & {s.match for s in identified.identification}
    for v in identified.voiceprints:
        assert set(v.confidence) == {f"reader-{k}" for k in meeting.enrollment}
        assert all(v.confidence[a] < RECOMMENDED_THRESHOLD for a in absent)


def test_output_is_the_pyannoteai_schema(identified):
    wire = identified.wire()
    assert IdentifyOutput.model_validate(json.loads(json.dumps(wire))) == identified
    assert all(set(s) >= {"speaker", "start", "end", "diarizationSpeaker", "match"} for s in wire["identification"])
    assert [d["speaker"] for d in wire["diarization"]] == [s["diarizationSpeaker"] for s in wire["identification"]]


def test_foreign_voiceprint_is_refused_before_any_work(meeting):
    other = VoiceprintInput(label="Zoe", voiceprint=voiceprint.encode(np.ones(192), "other-model"))
    with pytest.raises(VoiceprintError, match="Zoe"):
        tasks.identify(speaker_models(), Audio(meeting.samples[:SR]), [other])


def test_quiet_far_field_recording_still_finds_speech():
    x = meetings.read(meetings.AMI / "trn05.wav")  # loud end ≈ −30 dBFS
    diar = tasks.diarize(speaker_models(), Audio(x))
    assert diar.speech > 10 and diar.segments


def test_silent_recording_is_refused(enrolled):
    with pytest.raises(MediaError) as err:
        tasks.identify(speaker_models(), Audio(np.full(10 * SR, 1e-3, np.float32) *
                                                  np.sin(np.arange(10 * SR) / 3)), enrolled[:1])
    assert err.value.code == "silent"


def _majority(meeting, out: IdentifyOutput) -> dict[str, str]:
    from bench.scoring import majority_reference

    return majority_reference(meeting.reference, [(d.speaker, d.start, d.end) for d in out.diarization])


# ---- the job engine (process pool) ---------------------------------------------------------------------

async def test_local_engine_jobs(tmp_path, meeting, enrolled, local_engine):
    short = meetings.write_wav(tmp_path / "meeting.wav", meeting.samples[: 60 * SR])
    clip = meetings.write_wav(tmp_path / "clip.wav", meeting.enrollment[next(iter(meeting.enrollment))])
    junk = tmp_path / "junk.mp3"
    junk.write_text("not audio at all\n" * 100)
    engine = local_engine
    assert engine.recommended_threshold == RECOMMENDED_THRESHOLD
    url = await engine.upload(clip, key="enroll/clip.wav")
    assert url.startswith("media://enroll/clip.wav-"), "the key is a readable prefix of a key per upload"
    job = await engine.submit_voiceprint(VoiceprintRequest(url=url))
    assert job.status in (JobStatus.created, JobStatus.running)
    done = await engine.wait(job.job_id, timeout=600)
    assert done.status is JobStatus.succeeded, done.output
    assert voiceprint.decode(done.voiceprint_output().voiceprint).model == speaker_models().model_id

    bad = await engine.wait((await engine.submit_voiceprint(VoiceprintRequest(url=str(junk)))).job_id,
                            timeout=120)
    assert bad.status is JobStatus.failed and bad.error.code == "not_audio"
    assert (await engine.get_job(bad.job_id)).error.message.startswith("The clip is not an audio")  # no file name of ours

    request = IdentifyRequest(url=f"file://{short}", voiceprints=enrolled,
                              matching=Matching(threshold=RECOMMENDED_THRESHOLD))
    job = await engine.submit_identify(request)
    reported: list[float] = []

    async def seen(update) -> None:
        if update.progress is not None:
            reported.append(update.progress)

    current = await follow(engine, job.job_id, interval=0.02, deadline=time.monotonic() + 600, on_update=seen)
    assert current.status is JobStatus.succeeded, current.output
    assert current.identify_output().diarization and current.progress == 1.0
    assert any(0 < p < 1 for p in reported) and reported == sorted(reported), reported

    with pytest.raises(JobNotFound):
        await engine.get_job("no-such-job")
    await engine.release(url)
    from bot.errors import RequestError

    with pytest.raises(RequestError):
        await engine.submit_voiceprint(VoiceprintRequest(url=url))


# ---- command line --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    """The command line's VAR_DIR, shared by these tests: the first exports CAM++ into it, the others load it."""
    return tmp_path_factory.mktemp("var")


def _cli(*args: str, var: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, check=False, env={**os.environ, "VAR_DIR": str(var), **env})


def _exported(var: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in (var / "models" / "onnx").glob("*.onnx"))


def test_cli_voiceprint_and_bad_input(tmp_path, meeting, var_dir):
    clip = meetings.write_wav(tmp_path / "clip.wav", meeting.enrollment[next(iter(meeting.enrollment))])
    ok = _cli("voiceprint", str(clip), var=var_dir)
    assert ok.returncode == 0, ok.stderr
    assert voiceprint.decode(json.loads(ok.stdout)["voiceprint"])
    assert _exported(var_dir) == ["campplus"]  # a voiceprint loads no segmentation model, even under v2

    missing = _cli("voiceprint", str(tmp_path / "nope.wav"), var=var_dir)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    (tmp_path / "notes.txt").write_text("hello\n" * 100)
    text = _cli("voiceprint", str(tmp_path / "notes.txt"), var=var_dir)
    assert text.returncode == 2 and "Traceback" not in text.stderr and "not an audio" in text.stderr


def test_cli_identify_bad_input(tmp_path, meeting, enrolled, var_dir):
    media = meetings.write_wav(tmp_path / "m.wav", meeting.samples[: 5 * SR])
    (tmp_path / "bad.json").write_text("{not json")
    bad = _cli("identify", str(media), "--voiceprints", str(tmp_path / "bad.json"), var=var_dir)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not valid JSON" in bad.stderr
    (tmp_path / "dup.json").write_text(json.dumps([{"label": "A", "voiceprint": enrolled[0].voiceprint}] * 2))
    dup = _cli("identify", str(media), "--voiceprints", str(tmp_path / "dup.json"), var=var_dir)
    assert dup.returncode == 2 and "unique" in dup.stderr
    (tmp_path / "foreign.json").write_text(json.dumps([{"label": "A", "voiceprint": "QUJDREVGR0g"}]))
    foreign = _cli("identify", str(media), "--voiceprints", str(tmp_path / "foreign.json"), var=var_dir)
    assert foreign.returncode == 2 and "not made by this engine" in foreign.stderr
    helped = _cli("identify", "--help", var=var_dir)
    assert "75 with DIARIZATION=v3, 75 with DIARIZATION=v2" in " ".join(helped.stdout.split())


def test_cli_identify_follows_the_diarization_setting(tmp_path, meeting, enrolled, var_dir):
    media = meetings.write_wav(tmp_path / "m.wav", meeting.samples[: 40 * SR])
    (tmp_path / "vp.json").write_text(json.dumps([v.model_dump() for v in enrolled]))
    out = _cli("identify", str(media), "--voiceprints", str(tmp_path / "vp.json"), var=var_dir, DIARIZATION="v2")
    assert out.returncode == 0, out.stderr
    assert IdentifyOutput.model_validate(json.loads(out.stdout)).diarization
    gone = _cli("identify", str(media), "--voiceprints", str(tmp_path / "vp.json"), var=var_dir, DIARIZATION="v1")
    assert gone.returncode != 0 and "DIARIZATION" in gone.stderr and "Traceback" not in gone.stderr  # v1 left


def test_cli_threshold_defaults_to_the_chosen_pipelines(tmp_path):
    from bot.__main__ import build_parser
    from bot.commands.identify import _read_request
    from bot.speech.windows import EMBEDDING_MODEL

    vp = voiceprint.encode(np.ones(192), EMBEDDING_MODEL)
    (tmp_path / "vp.json").write_text(json.dumps([{"label": "A", "voiceprint": vp}]))
    args = build_parser("identify").parse_args(["identify", str(tmp_path / "m.wav"), "--voiceprints",
                                                str(tmp_path / "vp.json")])
    assert {d: _read_request(args, d).matching.threshold for d in ("v3", "v2")} == {"v3": 75, "v2": 75}
