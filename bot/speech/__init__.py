"""Speaker computation, free of Slack, storage and HTTP: audio → local segmentation → embeddings → clusters →
who spoke when (`diarization.SpeakerDiarization`, v2, with its constants on `DiarizationParams`; the default
`v3.pipeline.SpeakerDiarizationV3` with `V3Params`), voiceprints and their matching. Speech recognition and the
attribution of words to speakers live in `bot.transcription`."""
