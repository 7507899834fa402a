"""Turning an identify result into what people read: talk-time statistics, Block Kit (the summary, the /enroll
views), a timeline chart; and what a shared Slack file is (`files`)."""
