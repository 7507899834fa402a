"""Real speech for tests and benchmarks: LibriSpeech readers from ../shared/data, as 16 kHz samples or a WAV file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech"
SR = 16000


def utterance(reader: str, index: int) -> np.ndarray:
    import soundfile as sf

    samples, sr = sf.read(str(sorted((DATA / reader).glob("*.flac"))[index]), dtype="float32")
    assert sr == SR
    return samples


def wav_bytes(samples: np.ndarray) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()
