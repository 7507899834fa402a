"""Voice ID: a Slack bot that tells a team who spoke when in their meeting recordings."""
