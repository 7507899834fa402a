"""Transcripts without models: attribution of words to speakers, the wire schema, the .md/.vtt renderers,
the verified joining of model files, the settings and the command line's input checks."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from bot.schema import DiarizationSegment, IdentifyOutput, SpeakerMatch, SpeakerTurn
from bot.summary.stats import summarize
from bot.summary.transcript import md_text, render_markdown, render_vtt, speaker_names, vtt_text, vtt_time
from bot.transcription import models as asr_models
from bot.transcription.attribution import (
    SpokenWord,
    attribute,
    exclusive_of,
    exclusive_turns,
    group_turns,
    identified_labels,
    speaker_at,
    transcription_wire,
)
from bot.transcription.models import ModelFilesError, ModelSpec
from bot.transcription.recognizer import Word
from tests.ci import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


def seg(speaker: str, start: float, end: float) -> DiarizationSegment:
    return DiarizationSegment(speaker=speaker, start=start, end=end)


def triples(turns) -> list[tuple[str, float, float]]:
    return [(t.speaker, t.start, t.end) for t in turns]


# ---- exclusive diarization ------------------------------------------------------------------------------


def test_exclusive_turns_keep_the_floor_with_whoever_holds_it():
    turns = exclusive_turns([seg("A", 0, 5), seg("B", 4, 8), seg("A", 10, 12)])
    assert triples(turns) == [("A", 0, 5), ("B", 5, 8), ("A", 10, 12)]


def test_exclusive_turns_interruption_inside_a_long_turn_is_absorbed_then_speaker_returns():
    turns = exclusive_turns([seg("A", 0, 10), seg("B", 3, 4), seg("B", 9, 12)])
    assert triples(turns) == [("A", 0, 10), ("B", 10, 12)]


def test_exclusive_turns_merge_touching_pieces_of_one_speaker_and_drop_empty_ones():
    turns = exclusive_turns([seg("A", 0, 2), seg("A", 2, 3), seg("B", 3, 3), seg("B", 5, 6)])
    assert triples(turns) == [("A", 0, 3), ("B", 5, 6)]


def test_exclusive_turns_simultaneous_start_goes_to_a_stable_choice():
    assert triples(exclusive_turns([seg("B", 1, 3), seg("A", 1, 2)])) == [("A", 1, 2), ("B", 2, 3)]
    assert exclusive_turns([]) == []


def test_exclusive_of_prefers_the_engines_exclusive_diarization():
    out = IdentifyOutput(diarization=[seg("A", 0, 5), seg("B", 4, 8)])
    assert triples(exclusive_of(out)) == [("A", 0, 5), ("B", 5, 8)]
    given = out.model_copy()
    object.__setattr__(given, "exclusive_diarization", [seg("B", 0, 8)])
    assert triples(exclusive_of(given)) == [("B", 0, 8)]


# ---- words → speakers → turns ---------------------------------------------------------------------------

TURNS = [SpeakerTurn("A", 0.0, 4.0), SpeakerTurn("B", 4.0, 8.0), SpeakerTurn("A", 10.0, 12.0)]


@pytest.mark.parametrize(("t", "who"), [(0.5, "A"), (3.99, "A"), (4.0, "B"), (8.5, "B"), (9.5, "A"),
                                        (-1.0, "A"), (30.0, "A")])
def test_speaker_at_uses_the_turn_holding_the_time_else_the_nearest(t, who):
    assert speaker_at(t, TURNS) == who


def test_speaker_at_without_turns_is_nobody():
    assert speaker_at(1.0, []) is None


def test_a_word_goes_to_the_turn_holding_its_midpoint():
    # "across" starts in A's turn but most of it (its midpoint) is in B's
    words = [Word(3.0, 3.5, "hello"), Word(3.8, 4.4, "across"), Word(4.5, 5.0, "there")]
    assert [w.speaker for w in attribute(words, TURNS)] == ["A", "B", "B"]


def test_group_turns_splits_on_speaker_change_and_on_long_pauses():
    words = [SpokenWord(0, 1, "a", "A"), SpokenWord(1.1, 2, "b", "A"), SpokenWord(2.1, 3, "c", "B"),
             SpokenWord(6.0, 7, "d", "B"), SpokenWord(7.1, 8, "e", "A")]
    turns = group_turns(words)
    assert [(t.speaker, t.text, t.start, t.end) for t in turns] == [
        ("A", "a b", 0, 2), ("B", "c", 2.1, 3), ("B", "d", 6.0, 7), ("A", "e", 7.1, 8)]
    assert group_turns([]) == []


def test_wire_follows_pyannoteai_and_names_identified_speakers():
    turns = group_turns(attribute([Word(0.5, 1.0, "Hello,"), Word(1.1, 1.5, "Bob."), Word(5.0, 5.4, "Hi.")],
                                  TURNS))
    wire = transcription_wire(turns, {"A": "Alice"})
    assert wire["turnLevelTranscription"] == [
        {"speaker": "Alice", "start": 0.5, "end": 1.5, "text": "Hello, Bob."},
        {"speaker": "B", "start": 5.0, "end": 5.4, "text": "Hi."}]
    assert wire["wordLevelTranscription"][1] == {"speaker": "Alice", "start": 1.1, "end": 1.5, "text": "Bob."}
    out = IdentifyOutput.model_validate({"diarization": [], **wire})
    assert out.turn_level_transcription[0].text == "Hello, Bob."
    assert out.wire()["wordLevelTranscription"] == wire["wordLevelTranscription"]
    assert "turnLevelTranscription" not in IdentifyOutput().wire()


def test_identified_labels_come_from_the_matches():
    out = IdentifyOutput(voiceprints=[SpeakerMatch(speaker="SPEAKER_00", match="Alice"),
                                      SpeakerMatch(speaker="SPEAKER_01", match=None)])
    assert identified_labels(out) == {"SPEAKER_00": "Alice"}


# ---- renderers ------------------------------------------------------------------------------------------


def _summary_output() -> IdentifyOutput:
    return IdentifyOutput(
        diarization=[seg("SPEAKER_00", 0, 4), seg("SPEAKER_02", 4, 6), seg("SPEAKER_01", 6, 9)],
        voiceprints=[SpeakerMatch(speaker="SPEAKER_00", match="U1"), SpeakerMatch(speaker="SPEAKER_01"),
                     SpeakerMatch(speaker="SPEAKER_02")],
        duration=10)


def test_names_are_display_names_or_the_summarys_speaker_numbers():
    names = speaker_names(summarize(_summary_output()), {"U1": "Ada Lovelace"})
    assert names == {"SPEAKER_00": "Ada Lovelace", "SPEAKER_02": "Speaker 1", "SPEAKER_01": "Speaker 2"}
    claimed = speaker_names(summarize(_summary_output(), {"SPEAKER_02": "U9"}), {"U1": "Ada", "U9": "Nine"})
    assert claimed["SPEAKER_02"] == "Speaker 1 (claimed by Nine)" and claimed["SPEAKER_01"] == "Speaker 2"


EVIL = "*Eve* [click](http://evil.example) <script>x</script> `code`\n# Heading &amp; <!channel>"


def test_markdown_keeps_untrusted_names_and_words_as_text():
    turns = group_turns([SpokenWord(61.2, 62, EVIL, "S0"), SpokenWord(3700, 3701, "fine", "S1")])
    md = render_markdown("standup.mp4\n# injected", turns, {"S0": EVIL, "S1": "Bob"})
    lines = md.splitlines()
    assert lines[0] == r"# Transcript: standup.mp4 \# injected"
    assert lines[2].startswith(r"**0:01:01 \*Eve\* \[click\](http://evil.example) &lt;script&gt;")
    assert "\n#" not in md.replace("\n# Transcript", "") and "<" not in md and "&amp;amp;" in md
    assert r"\`code\`" in md
    assert lines[4] == "**1:01:40 Bob:** fine"
    assert md_text("a_b|c!") == r"a\_b\|c\!"


def test_vtt_cues_are_valid_and_cannot_be_broken_out_of():
    words = [SpokenWord(0.5 + i, 1.4 + i, f"w{i}", "S0") for i in range(8)]
    words.append(SpokenWord(9.0, 9.5, "a --> b\n\nWEBVTT <b>", "S1"))
    vtt = render_vtt(group_turns(words), {"S0": "Ann <v Bob>", "S1": "Sam & co"})
    assert vtt.endswith("&lt;b&gt;\n")
    blocks = vtt.rstrip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    assert blocks[1] == "00:00:00.500 --> 00:00:06.400\n<v Ann &lt;v Bob&gt;>w0 w1 w2 w3 w4 w5"
    assert blocks[2].startswith("00:00:06.500 --> 00:00:08.400\n")
    assert blocks[3] == "00:00:09.000 --> 00:00:09.500\n<v Sam &amp; co>a --&gt; b WEBVTT &lt;b&gt;"
    assert len(blocks) == 4 and vtt.count("-->") == 3
    assert vtt_time(3723.4567) == "01:02:03.457" and vtt_text("x\u2028y") == "x y"


def test_empty_transcript_still_renders():
    assert "No speech" in render_markdown("x", [], {})
    assert render_vtt([], {}) == "WEBVTT\n"


# ---- model files ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """A split model in two importable packages, like the real wheels, and its spec with true hashes."""
    parts = {"fakemodel_a": {"config.json": b"{}", "model.bin.part1": b"first half|"},
             "fakemodel_b": {"model.bin.part2": b"second half"}}
    for package, files in parts.items():
        monkeypatch.delitem(sys.modules, package, raising=False)  # each test imports its own copy
        (tmp_path / "site" / package).mkdir(parents=True)
        (tmp_path / "site" / package / "__init__.py").write_text("")
        for name, data in files.items():
            (tmp_path / "site" / package / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = ModelSpec(
        name="fake", install="fakemodel-a fakemodel-b",
        sources={"config.json": (("fakemodel_a", "config.json"),),
                 "model.bin": (("fakemodel_a", "model.bin.part1"), ("fakemodel_b", "model.bin.part2"))},
        sha256={"config.json": hashlib.sha256(b"{}").hexdigest(),
                "model.bin": hashlib.sha256(b"first half|second half").hexdigest()})
    monkeypatch.setitem(asr_models.MODELS, "fake", spec)
    return spec


def test_split_model_is_joined_once_into_var_dir_and_verified(fake_model, tmp_path: Path):
    folder = asr_models.model_dir("fake", tmp_path / "var")
    assert folder == tmp_path / "var" / "models" / "fake"
    assert (folder / "model.bin").read_bytes() == b"first half|second half"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["fake"]  # no temporary folder left behind
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert asr_models.model_dir("fake", tmp_path / "var") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime  # not joined again


def test_a_part_that_does_not_match_its_hash_is_refused_and_nothing_is_installed(fake_model, tmp_path: Path):
    (tmp_path / "site" / "fakemodel_b" / "model.bin.part2").write_bytes(b"second half, tampered")
    with pytest.raises(ModelFilesError, match="does not match its recorded SHA-256"):
        asr_models.model_dir("fake", tmp_path / "var")
    assert list((tmp_path / "var" / "models").iterdir()) == []


def test_a_joined_model_changed_later_is_refused(fake_model, tmp_path: Path):
    folder = asr_models.model_dir("fake", tmp_path / "var")
    (folder / "model.bin").write_bytes(b"something else")
    with pytest.raises(ModelFilesError, match="refusing to load"):
        asr_models.model_dir("fake", tmp_path / "var")


def test_a_missing_model_package_says_what_to_install(fake_model, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(asr_models.MODELS, "fake", ModelSpec(
        name="fake2", install="fakemodel-zzz==1", sources={"model.bin": (("fakemodel_zzz", "m.bin"),)},
        sha256={"model.bin": "0" * 64}))
    with pytest.raises(ModelFilesError, match="pip install fakemodel-zzz==1"):
        asr_models.model_dir("fake", tmp_path / "var")
    with pytest.raises(ModelFilesError, match="Unknown speech model"):
        asr_models.model_dir("large", tmp_path / "var")


def test_the_shipped_models_pass_their_recorded_hashes(tmp_path: Path):
    """The pinned wheels as installed: base joined, tiny.en in place."""
    for name in asr_models.MODELS:
        try:
            folder = asr_models.model_dir(name, tmp_path)
        except ModelFilesError as exc:
            if "not installed" in str(exc):
                skip_or_fail(str(exc))
            raise
        assert (folder / "model.bin").is_file()


# ---- settings and command line --------------------------------------------------------------------------


def test_transcript_settings(monkeypatch: pytest.MonkeyPatch):
    from pydantic import ValidationError

    from bot.config import Settings, TranscriptModel

    monkeypatch.setenv("TRANSCRIPT", "off")
    monkeypatch.setenv("TRANSCRIPT_LANGUAGE", "DE")
    s = Settings(_env_file=None)
    assert s.transcript is False and s.transcript_language == "de" and s.transcript_model is TranscriptModel.base
    monkeypatch.setenv("TRANSCRIPT_LANGUAGE", "auto")
    assert Settings(_env_file=None).transcript_language is None
    for bad in ({"transcript_language": "en; rm"}, {"transcript_model": "large"},
                {"transcript_model": "tiny.en", "transcript_language": "fr"}):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, **bad)


def test_transcribe_command_rejects_bad_voiceprints_before_loading_models(tmp_path: Path):
    media = tmp_path / "m.wav"
    media.write_bytes(b"")
    run = subprocess.run([sys.executable, "-m", "bot", "transcribe", str(media), "--voiceprints",
                          str(tmp_path / "none.json")], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VAR_DIR": str(tmp_path)})
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: {tmp_path / 'none.json'} does not exist"
    assert run.stdout == ""


async def test_worker_refuses_a_file_that_is_not_media_with_the_engines_error(tmp_path: Path):
    from bot.errors import MediaError
    from bot.transcription.recognizer import TranscriptionWorker

    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording\n" * 100)
    worker = TranscriptionWorker("base", tmp_path / "var", "en")
    try:
        with pytest.raises(MediaError) as caught:
            await worker.transcribe(notes)
    finally:
        await worker.close()
    assert caught.value.code in {"not_audio", "corrupt", "no_audio_track", "bad_media"}
    assert not (tmp_path / "var").exists()  # the model was never prepared for it
