"""`python -m bot voiceprint CLIP` and `python -m bot identify MEDIA --voiceprints VP.json`.

Both print JSON on stdout. Bad input exits with status 2 and one line on stderr. They run the engine in
this process, with the `DIARIZATION` setting and the ONNX models exported once into `VAR_DIR/models/onnx`: the
input is checked before the models load, so mistakes are reported at once, and only the models the command needs
load (a voiceprint needs no segmentation).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.speech.matching import CALIBRATIONS


def configure_voiceprint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", type=Path, help="audio or video file of one person speaking alone, at most 30 s")


def configure_identify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("media", type=Path, help="meeting recording (audio or video)")
    parser.add_argument("--voiceprints", type=Path, required=True, metavar="VP.json",
                        help='JSON list of {"label": ..., "voiceprint": ...}')
    defaults = ", ".join(f"{c.threshold:g} with DIARIZATION={v}" for v, c in CALIBRATIONS.items())
    parser.add_argument("--threshold", type=float, metavar="N",
                        help=f"minimum confidence 0-100 to name a speaker (default: the engine's recommended "
                             f"threshold, {defaults}; the API's default is 0, which always names the best match)")
    parser.add_argument("--no-exclusive-matching", action="store_true",
                        help="let one voiceprint name several diarized speakers")
    parser.add_argument("--num-speakers", type=int, metavar="N", help="exact number of speakers")
    parser.add_argument("--min-speakers", type=int, metavar="N", help="at least this many speakers")
    parser.add_argument("--max-speakers", type=int, metavar="N", help="at most this many speakers")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def main_voiceprint(args: argparse.Namespace) -> int:
    from bot.config import load_settings
    from bot.errors import EngineError
    from bot.speech import tasks

    try:
        audio = tasks.decode_clip(args.clip)
        output = tasks.make_voiceprint(_models(load_settings()), audio)
    except EngineError as exc:
        return _fail(exc.message)
    print(json.dumps(output.wire()))
    return 0


def _read_request(args: argparse.Namespace, diarization: str):
    """The identify request from the command line; raises ValueError with a one-line reason."""
    from pydantic import ValidationError

    from bot.schema import IdentifyRequest

    try:
        items = json.loads(args.voiceprints.read_text())
    except FileNotFoundError:
        raise ValueError(f"{args.voiceprints} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{args.voiceprints} is not valid JSON ({_one_line(exc)})") from None
    if not isinstance(items, list):
        message = f'{args.voiceprints} must hold a JSON list of {{"label": ..., "voiceprint": ...}}'
        raise ValueError(message)  # noqa: TRY004 - reported to the person as bad input, like the others
    try:
        return IdentifyRequest(
            url=str(args.media.resolve()), voiceprints=items,
            matching={"threshold": CALIBRATIONS[diarization].threshold if args.threshold is None else args.threshold,
                      "exclusive": not args.no_exclusive_matching},
            num_speakers=args.num_speakers, min_speakers=args.min_speakers, max_speakers=args.max_speakers)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None


def main_identify(args: argparse.Namespace) -> int:
    from bot.config import load_settings
    from bot.errors import EngineError
    from bot.speech import tasks
    from bot.speech.audio import decode
    from bot.speech.windows import EMBEDDING_MODEL

    settings = load_settings()
    try:
        request = _read_request(args, settings.diarization)
    except ValueError as exc:
        return _fail(str(exc))
    max_duration = settings.max_recording_hours * 3600
    try:
        tasks.check_voiceprints(request.voiceprints, EMBEDDING_MODEL)
        audio = decode(args.media, max_duration)
        output = tasks.identify(_models(settings), audio, request.voiceprints, request.matching, request.num_speakers,
                                   request.min_speakers, request.max_speakers)
    except EngineError as exc:
        return _fail(exc.message)
    print(json.dumps(output.wire()))
    return 0


def _models(settings):
    """The models for one command, as the settings choose them; the diarization models load only if used."""
    from bot.speech.onnx import cache_folder
    from bot.speech.windows import SpeakerModels

    return SpeakerModels(diarization=settings.diarization, cache=cache_folder(settings.var_dir), preload=False)
