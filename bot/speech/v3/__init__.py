"""Diarization v3: v2's streaming pass (segmentation-3.0 windows, runs, CAM++), then speech and overlap from the
segmentation's probabilities, speaker counting that holds, and the enrolled voices as anchors."""
