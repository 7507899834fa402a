"""What the tests and the benchmarks both run the bot in: the fake Slack Web API, a throwaway PostgreSQL
server, a canned engine output. Tests and benchmarks import it; it imports neither (tests/test_architecture.py)."""
