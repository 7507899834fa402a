"""Speech processing beyond who-spoke-when: recognition and attribution of words to speakers."""
