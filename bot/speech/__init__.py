"""Speech computation, free of Slack, storage and HTTP: audio → local segmentation → embeddings → clusters →
who spoke when. `pipeline.SpeakerDiarization` is the entry point; its constants live on `DiarizationParams`."""
