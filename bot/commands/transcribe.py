"""`python -m bot transcribe MEDIA [--voiceprints VP.json]`: who said what, as pyannoteAI-style JSON.

Diarizes (and identifies, given voiceprints) with the local engine in this process, recognises the words
with the local Whisper model, gives each word the speaker of the exclusive turn holding its midpoint, and
prints the identify output plus `exclusiveDiarization`, `turnLevelTranscription` and
`wordLevelTranscription`. Bad input exits with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("media", type=Path, help="meeting recording (audio or video)")
    parser.add_argument("--voiceprints", type=Path, metavar="VP.json",
                        help='JSON list of {"label": ..., "voiceprint": ...}; without it speakers stay SPEAKER_nn')
    parser.add_argument("--language", metavar="CODE",
                        help="spoken language, e.g. en (default: TRANSCRIPT_LANGUAGE, else detected)")
    # what the identify request reader expects; threshold None: the recommended one of DIARIZATION's pipeline
    parser.set_defaults(threshold=None, no_exclusive_matching=False, num_speakers=None,
                        min_speakers=None, max_speakers=None)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from bot.commands.identify import _models, _read_request
    from bot.config import load_settings
    from bot.errors import EngineError
    from bot.speech.audio import block_stream, decode
    from bot.transcription.attribution import transcribed_output
    from bot.transcription.models import ModelFilesError
    from bot.transcription.recognizer import Recognizer, check_language

    settings = load_settings()
    language = args.language or settings.transcript_language
    model = settings.transcript_model.value
    try:
        check_language(model, language)
        request = _read_request(args, settings.diarization) if args.voiceprints else None
    except (ValueError, ModelFilesError) as exc:
        return _fail(str(exc))
    try:
        audio = decode(args.media, settings.max_recording_hours * 3600)
        output = _identify(_models(settings), audio, request)
        recognizer = Recognizer(model, settings.var_dir, language)
        transcription = recognizer.transcribe_stream(lambda: block_stream(audio.samples))
    except EngineError as exc:
        return _fail(exc.message)
    except ModelFilesError as exc:
        return _fail(str(exc))
    print(json.dumps(transcribed_output(output, transcription)))
    return 0


def _identify(models, audio, request):
    """Identify output for `audio`; without voiceprints, diarization alone in the same shape."""
    from bot.schema import DiarizationSegment, IdentificationSegment, IdentifyOutput
    from bot.speech import tasks

    if request is not None:
        tasks.check_voiceprints(request.voiceprints, models.model_id)
        return tasks.identify(models, audio, request.voiceprints, request.matching)
    diar = tasks.diarize(models, audio)  # the pipeline DIARIZATION chose; no speech raises MediaError
    return IdentifyOutput(
        diarization=[DiarizationSegment(speaker=s, start=a, end=b) for s, a, b in diar.segments],
        identification=[IdentificationSegment(speaker=s, start=a, end=b, diarization_speaker=s)
                        for s, a, b in diar.segments],
        duration=round(audio.duration, 3))
