"""A canned identify output as an engine answers it: SPEAKER_00 is the enrolled U1 (0–2 s), SPEAKER_01 nobody
enrolled (2–3 s). The fault tests' scripted engine and the chaos benchmark's simulated engine both answer it."""

OUTPUT = {
    "diarization": [{"speaker": "SPEAKER_00", "start": 0.0, "end": 2.0},
                    {"speaker": "SPEAKER_01", "start": 2.0, "end": 3.0}],
    "identification": [{"speaker": "U1", "start": 0.0, "end": 2.0, "diarizationSpeaker": "SPEAKER_00", "match": "U1"},
                       {"speaker": "SPEAKER_01", "start": 2.0, "end": 3.0, "diarizationSpeaker": "SPEAKER_01",
                        "match": None}],
    "voiceprints": [{"speaker": "SPEAKER_00", "match": "U1", "confidence": {"U1": 91.0}},
                    {"speaker": "SPEAKER_01", "match": None, "confidence": {"U1": 12.0}}],
    "duration": 3.0,
}
