"""A recognizer double for the transcript orchestration tests: fixed words, optional failure or gate."""
from __future__ import annotations

import asyncio
from pathlib import Path

from bot.transcription.recognizer import Transcription, Word

# OUTPUT in testbed.outputs: SPEAKER_00 (U1, "Ann") speaks 0–2 s, SPEAKER_01 (unknown) 2–3 s.
WORDS = [Word(0.2, 0.6, "Hello"), Word(0.7, 1.1, "team,"), Word(2.1, 2.4, "hi"), Word(2.5, 2.9, "Ann.")]


class StubRecognizer:
    def __init__(self, *, fail: Exception | None = None, gate: asyncio.Event | None = None):
        self.fail, self.gate = fail, gate
        self.paths: list[Path] = []
        self.started = asyncio.Event()

    async def transcribe(self, path: Path, progress=None) -> Transcription:
        assert path.is_file() and path.stat().st_size > 0, "the recording's audio must be there to recognise"
        self.paths.append(path)
        self.started.set()
        if progress:
            progress(0.5)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return Transcription(list(WORDS), "en", 3.0)

    async def close(self) -> None:
        pass
