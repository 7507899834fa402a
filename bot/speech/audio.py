"""Decode any media people share to 16 kHz mono float32, and bring its level up so quiet speech is found.

Decoding streams through PyAV frame by frame (no ffmpeg binary, no temporary WAV); multi-channel audio is
mixed down by the resampler, video files are read by their audio track, and a recording longer than the
limit is refused from its container header before decoding, or as soon as the limit is crossed when the
header does not say.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.errors import MediaError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Level normalisation: the loud end of the recording (99.5th percentile of |x|) is brought to TARGET_LEVEL.
# The gain is capped so that a recording of pure hiss is not blown up into "speech".
TARGET_LEVEL = 0.3
MAX_GAIN = 100.0  # +40 dB: enough for the far-field AMI excerpts (p99.5 ≈ 0.015)
SILENT_PEAK = 1e-4  # −80 dBFS: digital silence or near enough
TEXT_FORMATS = {"tty", "txt", "bin"}  # ffmpeg renders text files (and any .bin) as "video" (ANSI art): not media


@dataclass(frozen=True)
class Audio:
    """Decoded audio: 16 kHz mono float32 samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def spoken_duration(seconds: float) -> str:
    """'42 s', '12 min', '4 h 30 min': how a person would say it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def too_long(duration: float, limit: float, noun: str = "recording") -> MediaError:
    """E.g. "The clip is 42 s long; voiceprints take at most 30 s." (noun "clip") or a recording's limit; an
    infinite duration is one measured only as far as the limit."""
    what = "voiceprints take" if noun == "clip" else "recordings can be"
    length = f"longer than {spoken_duration(limit)}" if math.isinf(duration) else f"{spoken_duration(duration)} long"
    return MediaError(
        f"The {noun} is {length}; {what} at most {spoken_duration(limit)}.",
        code="too_long",
    )


def _not_audio(name: str) -> MediaError:
    return MediaError(f"{name} is not an audio or video file I can read (wav, flac, mp3, m4a, ogg, opus, webm, "
                      "mp4, mov).", code="not_audio")


def _open(path: Path, name: str):
    import av

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{name} does not exist.", code="not_found")
    if path.stat().st_size == 0:
        raise MediaError(f"{name} is empty.", code="empty")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise _not_audio(name) from None
    except av.error.FFmpegError as exc:
        log.info("%s could not be opened: %s", path.name, exc.strerror)
        raise MediaError(f"{name} could not be opened: it looks damaged.", code="corrupt") from None


def _header_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def media_duration(path: Path, stop_after: float = math.inf) -> float | None:
    """How long a media file's audio runs, without decoding: the longer of what its header states and where its
    packets' timestamps end (a header may state no length, or understate it, and an engine that bills by the
    hour must not be the first to find out). Packets are read only while the header's length is within
    `stop_after` seconds, and no further than that: infinity means "longer than `stop_after`". None when the file
    says nothing or cannot be read: the decoder reports the real problem (and checks the length) later."""
    try:
        with _open(path, Path(path).name) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            stated = _header_duration(container, stream)
            if stated is not None and stated > stop_after:
                return stated
            found = _packets_end(container, stream, stop_after)
    except Exception:  # noqa: BLE001 — see the docstring
        return None
    known = [d for d in (stated, found) if d is not None]
    return max(known) if known else None


def _packets_end(container, stream, stop_after: float) -> float | None:
    if stream.time_base is None:
        return None
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    end = None
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        t = float((packet.pts + (packet.duration or 0)) * stream.time_base) - start
        end = t if end is None else max(end, t)
        if end > stop_after:
            return math.inf
    return end


def decode(path: Path, max_duration: float | None = None, *, noun: str = "recording",
           name: str | None = None) -> Audio:
    """Decode `path` to 16 kHz mono float32, refusing files longer than `max_duration` seconds.

    Error messages call the file `name` (default: its file name). An engine passes e.g. "The recording":
    its own storage name means nothing to the person and must not reach a channel."""
    return Audio(np.concatenate(list(decode_blocks(path, max_duration, noun=noun, name=name))))


def decode_blocks(path: Path, max_duration: float | None = None, *, noun: str = "recording",
                  name: str | None = None) -> Iterator[np.ndarray]:
    """`decode` as a stream of finite float32 blocks in [-1, 1]: memory stays bounded for long recordings.

    Errors surface while iterating (a too-long file without a header duration, once the limit is crossed).
    """
    import av

    name = name or Path(path).name
    container = _open(path, name)
    with container:
        if not container.streams.audio:
            if container.streams.video and container.format.name not in TEXT_FORMATS:
                raise MediaError(f"{name} is a video without an audio track.", code="no_audio_track")
            raise _not_audio(name)
        stream = container.streams.audio[0]
        header = _header_duration(container, stream)
        if max_duration is not None and header is not None and header > max_duration + 1:
            raise too_long(header, max_duration, noun)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        limit = None if max_duration is None else int((max_duration + 1) * SAMPLE_RATE)
        total = packet_bytes = 0
        try:
            for packet in container.demux(stream):
                packet_bytes += packet.size
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        chunk = _clean(out.to_ndarray().reshape(-1))
                        total += len(chunk)
                        yield chunk
                if limit is not None and total > limit:
                    raise too_long(total / SAMPLE_RATE, max_duration, noun)
            for out in resampler.resample(None):
                chunk = _clean(out.to_ndarray().reshape(-1))
                total += len(chunk)
                yield chunk
        except av.error.FFmpegError as exc:
            if total == 0:
                log.info("%s could not be decoded: %s", Path(path).name, exc.strerror)
                raise MediaError(f"{name} could not be decoded: it looks damaged.", code="corrupt") from None
            # A damaged tail after real audio: keep what decoded, as players do.
    if total == 0 and (packet_bytes or Path(path).stat().st_size > 4096):
        raise MediaError(f"{name} could not be decoded: its audio data looks damaged.", code="corrupt")
    if total == 0:
        raise MediaError(f"{name} holds no audio samples.", code="empty")


def _clean(chunk: np.ndarray) -> np.ndarray:
    chunk = chunk.astype(np.float32, copy=False)
    if not np.all(np.isfinite(chunk)):
        chunk = np.nan_to_num(chunk, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(chunk, -1.0, 1.0)


@dataclass(frozen=True)
class MediaStream:
    """A media file to be decoded block by block (v2 diarization): `decode()` gives all of it at once."""

    path: Path
    max_duration: float | None = None
    noun: str = "recording"
    name: str | None = None  # what error messages call the file (see `decode`)

    def blocks(self) -> Iterator[np.ndarray]:
        return decode_blocks(self.path, self.max_duration, noun=self.noun, name=self.name)

    @property
    def samples_hint(self) -> int | None:
        """Samples the container header announces (for progress), None when it does not say."""
        try:
            with _open(self.path, self.name or Path(self.path).name) as container:
                if not container.streams.audio:
                    return None
                seconds = _header_duration(container, container.streams.audio[0])
        except MediaError:
            return None
        return None if seconds is None else int(seconds * SAMPLE_RATE)

    def decode(self) -> Audio:
        return decode(self.path, self.max_duration, noun=self.noun, name=self.name)


def check_not_silent(peak: float) -> None:
    """Digital silence (peak under SILENT_PEAK) is refused with a typed error."""
    if peak < SILENT_PEAK:
        raise MediaError("The recording is silent: no sound at all was found in it.", code="silent")


def normalise_level(samples: np.ndarray) -> np.ndarray:
    """Scale so the loud end of the signal sits at TARGET_LEVEL (gain ≤ MAX_GAIN); silence is refused.

    Why: Silero VAD's speech probability depends on level; the far-field AMI excerpts come back as "no speech"
    without this.
    """
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    check_not_silent(peak)
    loud = float(np.percentile(np.abs(samples[:: max(1, len(samples) // 2_000_000)]), 99.5))
    gain = min(MAX_GAIN, TARGET_LEVEL / max(loud, 1e-9))
    out = samples * np.float32(gain)
    np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def block_stream(samples: np.ndarray, seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Samples in memory as a stream of blocks, like `decode_blocks` gives a file."""
    size = int(seconds * SAMPLE_RATE)
    return (samples[i:i + size] for i in range(0, len(samples), size))


class Excerpts:
    """Part of a stream's samples kept as it passes by (`tap`), for what needs audio again after the one pass:
    all of it up to `capacity` blocks, beyond that every other block and so on, so what is kept stays spread
    evenly over the recording and its memory bounded (int16: 40 × 30 s = 38 MB)."""

    def __init__(self, block_seconds: float = 30.0, capacity: int = 40):
        self.size = int(block_seconds * SAMPLE_RATE)
        self.capacity = capacity
        self.stride = 1
        self.kept: dict[int, np.ndarray] = {}

    def tap(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        filled = index = 0
        for block in blocks:
            yield block
            rest = np.asarray(block, np.float32).reshape(-1)
            while len(rest):
                take = min(len(rest), self.size - filled)
                if index % self.stride == 0:
                    pending.append(rest[:take])
                rest, filled = rest[take:], filled + take
                if filled == self.size:
                    self._store(index, pending)
                    pending, filled, index = [], 0, index + 1
        if filled:
            self._store(index, pending)

    def _store(self, index: int, parts: list[np.ndarray]) -> None:
        if index % self.stride or not parts:
            return
        self.kept[index] = np.round(np.concatenate(parts) * 32767).astype(np.int16)
        if len(self.kept) > self.capacity:
            self.stride *= 2
            self.kept = {i: x for i, x in self.kept.items() if i % self.stride == 0}

    def cut(self, start: float, end: float) -> np.ndarray:
        """The kept samples between two times in seconds (only the kept part of a span that crosses a dropped
        block; empty when none of it was kept)."""
        lo, hi = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        parts = []
        for i in range(lo // self.size, max(hi - 1, lo) // self.size + 1):
            if i in self.kept:
                parts.append(self.kept[i][max(lo - i * self.size, 0):max(hi - i * self.size, 0)])
        return np.concatenate(parts).astype(np.float32) / 32767 if parts else np.zeros(0, np.float32)
