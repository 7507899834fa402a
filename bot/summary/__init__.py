"""Turning an identify result into what people read: talk-time statistics, Block Kit, a timeline chart."""
