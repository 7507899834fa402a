"""Helpers for the speaker-engine tests: the shared speech data, warm models once per process, PyAV encoding."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import meetings

needs_data = pytest.mark.speech  # tests/conftest.py skips it without ../shared/data (fails under CI)
SR = 16000


@lru_cache(maxsize=1)
def speaker_models():
    """The warm models, loaded once for the whole test process."""
    from bot.speech.windows import SpeakerModels
    from tests.shared_models import model_cache

    return SpeakerModels(cache=model_cache())


def utterance(reader: str, index: int) -> np.ndarray:
    return meetings.read(meetings.utterances(reader)[index])


def encode(path: Path, samples: np.ndarray, rate: int = SR, *, codec: str = "pcm_s16le", channels: int = 1,
           video: bool = False, audio: bool = True) -> Path:
    """Write `samples` (16 kHz mono float) with PyAV: any codec, rate, channel count, optional video track."""
    import av

    x = samples.astype(np.float32)
    if rate != SR:
        x = np.interp(np.arange(int(len(x) * rate / SR)) * SR / rate, np.arange(len(x)), x).astype(np.float32)
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as out:
        vstream = None
        if video:
            vstream = out.add_stream("mpeg4", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        if audio:
            astream = out.add_stream(codec, rate=rate, layout=layout)
            fmt = astream.codec_context.codec.audio_formats[0].name
            planar = np.stack([x, x * 0.5] if channels == 2 else [x])
            resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
            frame_size = astream.codec_context.frame_size or 1024
            for start in range(0, planar.shape[1], frame_size):
                chunk = np.ascontiguousarray(planar[:, start:start + frame_size])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate = rate
                for f in resampler.resample(frame):
                    out.mux(astream.encode(f))
            out.mux(astream.encode(None))
        if vstream is not None:
            for i in range(int(len(x) / SR * 10)):
                img = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 255, np.uint8), format="rgb24")
                out.mux(vstream.encode(img.reformat(format="yuv420p")))
            out.mux(vstream.encode(None))
    return path
