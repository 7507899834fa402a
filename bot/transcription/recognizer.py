"""Speech recognition on the CPU: faster-whisper (CTranslate2, int8) with word timestamps.

`Recognizer` holds one loaded model; `TranscriptionWorker` keeps one in a separate process so that a long
recognition never blocks the event loop nor competes with it for the GIL, and the model loads once for
the life of that process. Weights come only from the verified local folder of `bot.transcription.models`.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bot.pools import exit_with_parent, stop_pool
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


class Recognizer:
    """One warm Whisper model. `transcribe` takes 16 kHz mono float32 samples."""

    def __init__(self, model: str = DEFAULT_MODEL, var_dir: Path = Path("./var"), language: str | None = None,
                 threads: int | None = None):
        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: we pass a local folder, never a hub name
        from faster_whisper import WhisperModel

        self.model_name = model
        self.language = check_language(model, language)
        folder = model_dir(model, var_dir)
        self.model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                  cpu_threads=threads or os.cpu_count() or 1, local_files_only=True)

    def transcribe(self, samples: np.ndarray, progress: Progress | None = None) -> Transcription:
        """Words with start/end seconds. Whisper's own VAD skips silences, where it would otherwise invent text."""
        duration = len(samples) / 16000
        segments, info = self.model.transcribe(samples, language=self.language, word_timestamps=True,
                                               vad_filter=True, beam_size=5, condition_on_previous_text=False)
        words: list[Word] = []
        for segment in segments:
            words += [Word(round(w.start, 3), round(w.end, 3), w.word.strip(), round(w.probability, 3))
                      for w in segment.words or [] if w.word.strip()]
            if progress and duration:
                progress(min(1.0, segment.end / duration))
        return Transcription(words, info.language, round(duration, 3))


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
    from bot.speech.audio import decode, normalise_level

    _report(0.0)
    audio = decode(Path(path), max_duration)  # bad media is refused before the model loads
    return _warm().transcribe(normalise_level(audio.samples), _report).wire()


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

