"""Speech computation, free of Slack, storage and HTTP: audio → local segmentation → embeddings → clusters →
who spoke when (`pipeline.SpeakerDiarization`, constants on `DiarizationParams`), and speech recognition with
the attribution of words to speakers."""
