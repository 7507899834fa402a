"""The engine's two operations on decoded audio with warm models: make a voiceprint, identify speakers.

These run inside a worker process (see `bot.engines.local`); they take and return typed values and raise
typed EngineErrors, so the benchmark and tests can call them directly too.
"""
from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np

from bot.errors import MediaError
from bot.schema import (
    DiarizationSegment,
    DiarizeOutput,
    IdentificationSegment,
    IdentifyOutput,
    Matching,
    SpeakerMatch,
    VoiceprintInput,
    VoiceprintOutput,
)
from bot.speech import matching, voiceprint
from bot.speech.audio import (
    SAMPLE_RATE,
    Audio,
    Excerpts,
    MediaStream,
    block_stream,
    check_not_silent,
    normalise_level,
)
from bot.speech.diarization import DiarizationResult
from bot.speech.windows import WINDOW, SpeakerModels, l2, windows

MAX_CLIP = 30.0  # seconds, as pyannoteAI
# Below ~3 s of speech a CAM++ voiceprint wanders: on the Libri readers, same-person similarity between
# 1.5 s windows and a 3 s-or-longer clip drops markedly, and pyannoteAI's guidance also asks for several
# seconds. 3 s keeps short, clean enrollment clips usable.
MIN_SPEECH = 3.0
# Average-linkage clustering of a clip's 1.5 s windows stops merging below this cosine similarity. On the
# 50 Libri utterances the last merge of one reader's windows is ≥ 0.54; for 20 clips of two readers
# (6 s each) it is ≤ 0.48: two clusters left means two people.
SAME_VOICE = 0.5
MIN_VOICE_SHARE = 0.2  # a second voice must hold at least this share of the clip's windows to count
VOICE_SECONDS = 60.0  # per v2 speaker: at most this much of their own speech makes the centroid matched to voiceprints
VOICE_MIN_TURN = 1.0  # seconds; shorter turns are used only when a speaker has no longer one

Progress = Callable[[float], None]


def decode_clip(path) -> Audio:
    """An enrollment clip, decoded with the voiceprint limit (decoding itself stops a second past it)."""
    from bot.speech.audio import decode

    return decode(path, MAX_CLIP, noun="clip", name="The clip")


def make_voiceprint(models: SpeakerModels, audio: Audio) -> VoiceprintOutput:
    """One voice, ≤ 30 s, ≥ MIN_SPEECH of speech → the voiceprint string."""
    from bot.speech.audio import too_long

    if audio.duration > MAX_CLIP + 0.05:
        raise too_long(audio.duration, MAX_CLIP, "clip")
    if audio.duration < MIN_SPEECH:
        raise MediaError(f"The clip is only {audio.duration:.1f} s long; a voiceprint needs at least "
                         f"{MIN_SPEECH:.0f} s of speech.", code="too_short")
    samples = normalise_level(audio.samples)
    emb, speech = models.clip_windows(samples)
    if speech == 0 or len(emb) == 0:
        raise MediaError("No speech was found in the clip.", code="silent")
    if speech < MIN_SPEECH:
        raise MediaError(f"Only {speech:.1f} s of speech was found in the clip; a voiceprint needs at least "
                         f"{MIN_SPEECH:.0f} s. Record a longer sample.", code="too_short")
    if several_voices(emb):
        raise MediaError("Two or more voices were found in the clip; a voiceprint needs one person speaking "
                         "alone.", code="multiple_speakers")
    return VoiceprintOutput(voiceprint=voiceprint.encode(l2(emb.mean(0)), models.model_id))


def several_voices(emb: np.ndarray) -> bool:
    """True when a clip's windows form two groups of clearly different voice, each a real share of it."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(emb) < 2:
        return False
    groups = fcluster(linkage(emb, "average", metric="cosine"), t=1 - SAME_VOICE, criterion="distance")
    shares = np.bincount(groups) / len(groups)
    return int(np.sum(shares >= MIN_VOICE_SHARE)) >= 2


def check_voiceprints(items: list[VoiceprintInput], model: str) -> np.ndarray:
    """All voiceprint vectors (labels × dim); a foreign or damaged one raises VoiceprintError first."""
    return np.stack([voiceprint.decode_compatible(v.voiceprint, model, v.label) for v in items])


def identify(models: SpeakerModels, audio: Audio | MediaStream, voiceprints: list[VoiceprintInput],
             match: Matching | None = None, num: int | None = None, min_n: int | None = None,
             max_n: int | None = None, progress: Progress | None = None, exclusive: bool = False
             ) -> IdentifyOutput:
    """Diarize, then match each diarized speaker to the voiceprints (pyannoteAI identify output)."""
    match = match or Matching()
    report = progress or (lambda f: None)
    diar, sims = diarize_and_compare(models, audio, check_voiceprints(voiceprints, models.model_id),
                                     num, min_n, max_n, report)
    labels = [v.label for v in voiceprints]
    speakers = diar.speakers
    conf = matching.confidence(sims, matching.CALIBRATIONS[models.diarization])
    chosen = matching.assign(conf, match.threshold, match.exclusive).matches
    names = {spk: (labels[c] if c is not None else None) for spk, c in zip(speakers, chosen)}
    report(1.0)
    return IdentifyOutput(
        **diarize_output(diar, num, min_n, max_n, exclusive).model_dump(),
        identification=[IdentificationSegment(speaker=names[s] or s, start=a, end=b, diarization_speaker=s,
                                              match=names[s]) for s, a, b in diar.segments],
        voiceprints=[SpeakerMatch(speaker=s, match=names[s],
                                  confidence={lab: float(conf[i, j]) for j, lab in enumerate(labels)})
                     for i, s in enumerate(speakers)],
    )


def diarize_only(models: SpeakerModels, audio: Audio | MediaStream, num: int | None = None,
                 min_n: int | None = None, max_n: int | None = None, progress: Progress | None = None,
                 exclusive: bool = False) -> DiarizeOutput:
    """Who spoke when without voiceprints (pyannoteAI diarize output): for recordings nobody enrolled for."""
    report = progress or (lambda f: None)
    diar = diarize(models, audio, num, min_n, max_n, report)
    report(1.0)
    return diarize_output(diar, num, min_n, max_n, exclusive)


def diarize_output(diar: DiarizationResult, num: int | None, min_n: int | None,
                   max_n: int | None, exclusive: bool) -> DiarizeOutput:
    def wire(segments):
        return [DiarizationSegment(speaker=s, start=a, end=b) for s, a, b in segments]

    return DiarizeOutput(
        diarization=wire(diar.segments),
        exclusive_diarization=wire(diar.exclusive) if exclusive else None,
        warning=speaker_count_warning(len(diar.speakers), num, min_n, max_n),
        duration=round(diar.duration, 3),
    )


def diarize(models: SpeakerModels, audio: Audio | MediaStream, num: int | None = None, min_n: int | None = None,
            max_n: int | None = None, progress: Progress | None = None, excerpts: Excerpts | None = None,
            anchors: np.ndarray | None = None) -> DiarizationResult:
    """Who spoke when, by the models' pipeline (v3 or v2: segmentation windows, overlap-aware).

    The pipeline needs no level normalisation (its segmentation normalises each window, its fbank is
    mean-normalised), so it decodes a MediaStream block by block: memory does not grow with the recording's
    length. `excerpts` keeps part of what passes by; `anchors`, the job's voiceprint vectors, guide v3's count."""
    blocks = block_stream(audio.samples) if isinstance(audio, Audio) else audio.blocks()
    diar = models.pipeline(excerpts.tap(blocks) if excerpts else blocks, num, min_n, max_n, progress=progress,
                           total_samples=len(audio.samples) if isinstance(audio, Audio) else audio.samples_hint,
                           anchors=anchors)
    check_not_silent(diar.peak)
    if not diar.segments:
        raise MediaError("No speech was found in the recording.", code="silent")
    return diar


def diarize_and_compare(models: SpeakerModels, audio: Audio | MediaStream, vectors: np.ndarray,
                        num: int | None = None, min_n: int | None = None, max_n: int | None = None,
                        progress: Progress | None = None, use_anchors: bool = True
                        ) -> tuple[DiarizationResult, np.ndarray]:
    """Diarization and the cosine similarity of each speaker (rows, in `diar.speakers` order) to each vector.
    The vectors also guide v3's speaker count (`use_anchors`; the benchmark measures without)."""
    excerpts = Excerpts()
    diar = diarize(models, audio, num, min_n, max_n, progress, excerpts, anchors=vectors if use_anchors else None)
    found = voice_centroids(models, excerpts, diar)
    centroids = np.stack([found[s] for s in diar.speakers])
    return diar, matching.similarity_matrix(centroids, vectors)


def voice_centroids(models: SpeakerModels, excerpts: Excerpts, diar: DiarizationResult) -> dict[str, np.ndarray]:
    """Each v2 speaker's centroid made the way voiceprints are made: the mean embedding of non-overlapping 1.5 s
    windows of their own speech (turns where they talk alone, longest first, up to VOICE_SECONDS, from the
    excerpts kept while diarizing); the clustering centroid for a speaker with none kept.

    v2's clustering centroids (means of up to 4.5 s local-speaker embeddings) sit lower against voiceprints
    on short recordings (a 27 s two-reader clip: cosine 0.79 against 0.83–0.86 for these), under the threshold."""
    out = dict(diar.centroids)
    for speaker in diar.speakers:
        own = sorted(((a, b) for s, a, b in diar.exclusive if s == speaker), key=lambda t: t[0] - t[1])
        parts, total = [], 0
        for a, b in [t for t in own if t[1] - t[0] >= VOICE_MIN_TURN] or own:
            piece = excerpts.cut(a, b)[: int(VOICE_SECONDS * SAMPLE_RATE) - total]
            if len(piece) >= SAMPLE_RATE // 4:
                parts.append(piece)
                total += len(piece)
            if total >= VOICE_SECONDS * SAMPLE_RATE:
                break
        if parts:
            edges = np.cumsum([0] + [len(x) for x in parts]) / SAMPLE_RATE
            wins = windows(list(pairwise(edges)), shift=WINDOW)
            out[speaker] = l2(models.embed(np.concatenate(parts), wins).mean(0))
    return out


def speaker_count_warning(found: int, num: int | None, min_n: int | None, max_n: int | None) -> str | None:
    lo, hi = (num, num) if num else (min_n, max_n)
    if lo and found < lo:
        return f"Only {found} speaker(s) could be told apart, fewer than the {lo} requested."
    if hi and found > hi:
        return f"{found} speakers were found, more than the {hi} requested."
    return None
