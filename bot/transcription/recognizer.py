"""Speech recognition on the CPU: faster-whisper (CTranslate2, int8) with word timestamps.

`Recognizer` holds one loaded model; `TranscriptionWorker` keeps one in a separate process so that a long
recognition never blocks the event loop nor competes with it for the GIL, and the model loads once for
the life of that process. It reads a recording block by block in bounded pieces (`bot.transcription.chunks`),
so its memory does not grow with the recording's length. Weights come only from the verified local folder of
`bot.transcription.models`.
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bot.pools import exit_with_parent, stop_pool
from bot.transcription.chunks import CHUNK_SECONDS, Level, chunks, measure_level
from bot.transcription.models import ModelFilesError, model_dir, spec_for

DEFAULT_MODEL = "base"
PROGRESS_POLL_SECONDS = 0.5

Progress = Callable[[float], None]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True)
class Transcription:
    words: list[Word]
    language: str
    duration: float

    def wire(self) -> dict:
        return {"language": self.language, "duration": self.duration, "words": [asdict(w) for w in self.words]}

    @classmethod
    def from_wire(cls, d: dict) -> Transcription:
        return cls([Word(**w) for w in d["words"]], d["language"], d["duration"])


def check_language(model: str, language: str | None) -> str | None:
    """The language to force (None: detect); an English-only model with another language is a setting error."""
    language = (language or "").strip().lower() or None
    if spec_for(model).english_only:
        if language not in (None, "en"):
            raise ModelFilesError(f"The speech model {model} understands only English, not {language!r}; "
                                  "use TRANSCRIPT_MODEL=base.")
        return "en"
    return language


# One piece's recognition: (samples, language to force or None, report(segment end s)) → (words in the
# piece's own time, language).
RecognizeOne = Callable[[np.ndarray, "str | None", Callable[[float], None]], tuple[list[Word], str]]


def recognize_pieces(recognize: RecognizeOne, pieces: Iterable[tuple[int, np.ndarray]], duration: float,
                     language: str | None = None, progress: Progress | None = None) -> Transcription:
    """Words of pieces cut from one recording (`bot.transcription.chunks.chunks`), shifted by each piece's
    offset in samples. With no language forced, the first piece that yields words decides it for the rest,
    as Whisper's detection on the recording's first speech decides it for a whole recording."""
    words: list[Word] = []
    detected = None
    for offset, samples in pieces:
        start = offset / 16000

        def report(end: float, start: float = start) -> None:
            if progress and duration:
                progress(min(1.0, (start + end) / duration))

        found, said = recognize(samples, language, report)
        del samples  # not held while the next piece is cut
        detected = detected or said
        if found and language is None:
            language = detected = said
        words += [Word(round(start + w.start, 3), round(start + w.end, 3), w.text, w.probability) for w in found]
    return Transcription(words, language or detected or "", round(duration, 3))


class Recognizer:
    """One warm Whisper model. `transcribe` takes 16 kHz mono float32 samples, `transcribe_stream` a recording
    as a stream of blocks, in bounded pieces."""

    def __init__(self, model: str = DEFAULT_MODEL, var_dir: Path = Path("./var"), language: str | None = None,
                 threads: int | None = None, chunk_seconds: float = CHUNK_SECONDS):
        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: we pass a local folder, never a hub name
        from faster_whisper import WhisperModel

        self.model_name = model
        self.language = check_language(model, language)
        self.chunk_seconds = chunk_seconds
        folder = model_dir(model, var_dir)
        self.model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                  cpu_threads=threads or os.cpu_count() or 1, local_files_only=True)

    def recognize(self, samples: np.ndarray, language: str | None,
                  report: Callable[[float], None] | None = None) -> tuple[list[Word], str]:
        """Words of one piece in its own time, reporting each segment's end in seconds. Whisper's own VAD
        skips silences, where it would otherwise invent text."""
        segments, info = self.model.transcribe(samples, language=language, word_timestamps=True,
                                               vad_filter=True, beam_size=5, condition_on_previous_text=False)
        words: list[Word] = []
        for segment in segments:
            words += [Word(round(w.start, 3), round(w.end, 3), w.word.strip(), round(w.probability, 3))
                      for w in segment.words or [] if w.word.strip()]
            if report:
                report(segment.end)
        del segments  # the piece's VAD input and features
        release_free_memory()
        return words, info.language

    def transcribe(self, samples: np.ndarray, progress: Progress | None = None) -> Transcription:
        """Words with start/end seconds of normalised samples held in memory, recognised in one piece."""
        return recognize_pieces(self.recognize, [(0, samples)], len(samples) / 16000, self.language, progress)

    def transcribe_stream(self, blocks: Callable[[], Iterable[np.ndarray]], progress: Progress | None = None,
                          level: Level | None = None) -> Transcription:
        """Words of a recording given as a stream of raw decoded blocks (`blocks()` is called once for the
        level, unless `level` is given, and once to recognise): memory is bounded by `chunk_seconds`."""
        level = level or measure_level(blocks())
        pieces = chunks(blocks(), level.gain, self.chunk_seconds)
        return recognize_pieces(self.recognize, pieces, level.duration, self.language, progress)


def release_free_memory() -> None:
    """Hands the C allocator's free pages back to the system after each piece. A piece's arrays are freed into
    glibc's heaps in holes that the next piece's sizes do not fit exactly: untrimmed, the recognizer's memory
    crept up by about 5 MB a piece on a 4-hour recording (250 MB of free pages held after 2½ hours)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except AttributeError:  # a C library without it (musl)
        return None


# ---- worker process side -------------------------------------------------------------------------------

_recognizer: Recognizer | None = None
_settings: tuple = ()
_progress = None


def _init_worker(model: str, var_dir: str, language: str | None, threads: int | None, progress) -> None:
    global _settings, _progress
    exit_with_parent()
    _settings, _progress = (model, Path(var_dir), language, threads), progress


def _warm() -> Recognizer:
    """The process's recognizer, loaded on first use so that a model error reaches the caller as itself."""
    global _recognizer
    if _recognizer is None:
        _recognizer = Recognizer(*_settings)
    return _recognizer


def _report(fraction: float) -> None:
    if _progress is not None:
        _progress.value = float(fraction)


def _work(path: str, max_duration: float) -> dict:
    return transcribe_file(_warm, Path(path), max_duration, _report).wire()


def transcribe_file(recognizer: Callable[[], Recognizer], path: Path, max_duration: float | None,
                    progress: Progress | None = None) -> Transcription:
    """A media file decoded twice, block by block: once for its level, once to recognise it in pieces, so
    nothing holds the whole recording. Bad media is refused in the first pass, before the model loads."""
    from bot.speech.audio import MediaStream

    if progress:
        progress(0.0)
    media = MediaStream(path, max_duration)
    level = measure_level(media.blocks())
    return recognizer().transcribe_stream(media.blocks, progress, level)


def _warm_quietly() -> None:
    _warm()


# ---- event loop side -----------------------------------------------------------------------------------


class TranscriptionWorker:
    """A recognizer in its own process (one recording at a time); `transcribe` awaits it without blocking.

    Errors: `bot.errors.MediaError` for a file that cannot be decoded, `ModelFilesError` when the
    model is missing or fails its hash check, `RuntimeError` when the worker process died.
    """

    def __init__(self, model: str = DEFAULT_MODEL, var_dir: Path = Path("./var"), language: str | None = None,
                 threads: int | None = None, max_duration_s: float = 4 * 3600):
        import multiprocessing

        check_language(model, language)
        self._ctx = multiprocessing.get_context("spawn")
        self._args = (model, str(var_dir), language, threads)
        self.max_duration_s = max_duration_s
        self._pool: ProcessPoolExecutor | None = None
        self._progress = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._progress = self._ctx.Value("d", 0.0)
            self._pool = ProcessPoolExecutor(1, mp_context=self._ctx, initializer=_init_worker,
                                             initargs=(*self._args, self._progress))
        return self._pool

    async def start(self) -> None:
        """Load the model now rather than with the first recording."""
        await asyncio.get_running_loop().run_in_executor(self._ensure_pool(), _warm_quietly)

    async def transcribe(self, path: Path, progress: Progress | None = None) -> Transcription:
        loop = asyncio.get_running_loop()
        pool = self._ensure_pool()
        self._progress.value = 0.0  # not the last recording's end while this one waits to start
        future = loop.run_in_executor(pool, _work, str(path), self.max_duration_s)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=PROGRESS_POLL_SECONDS)
                if done:
                    return Transcription.from_wire(future.result())
                if progress:
                    progress(self._progress.value)
        except BrokenProcessPool:
            self._pool = None  # the next recording gets a fresh process
            raise RuntimeError("The speech recognizer's worker stopped unexpectedly.") from None

    async def close(self) -> None:
        """Stops at once, a recognition in progress included (its recording is released and recognised again
        by the next worker): a stopping worker must not wait minutes for a long meeting."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, stop_pool, pool)


class LazyTranscriptionWorker:
    """A `TranscriptionWorker` made with these arguments at the first `transcribe`: nothing is checked or started
    before (a process that never transcribes never pays for it, and a language the model cannot do fails that
    recording's transcript, as it always has, not the process's start)."""

    def __init__(self, *args, **kwargs):
        self._args, self._kwargs = args, kwargs
        self._worker: TranscriptionWorker | None = None

    async def transcribe(self, path: Path, progress: Progress | None = None) -> Transcription:
        if self._worker is None:
            self._worker = TranscriptionWorker(*self._args, **self._kwargs)
        return await self._worker.transcribe(path, progress)

    async def close(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.close()
