"""People's text stays text, and internals stay in the log.

File names and other user text are escaped wherever they meet Slack's `text` or mrkdwn (no `<!channel>`
pings, no disguised links); failures the person cannot fix show a generic sentence with a reference id,
and the log has the details under that id. End to end: signed requests to the real endpoint, the fake
Slack Web API, and a real engine client whose server is down (so its error names an internal URL)."""
from __future__ import annotations

import json
import logging
import re
import socket

import pytest
import pytest_asyncio

from bot.failures import public_reason
from bot.schema import utcnow
from bot.summary.blocks import SlackMessage, render_summary
from bot.summary.stats import SpeakerStats, Summary
from bot.summary.status import render_failure, render_progress
from bot.text import escape
from storage.database import Database
from storage.migrate import upgrade
from testbed.fake_slack import TEAM_ID, BotUnderTest, FakeSlack, bot_settings
from tests.shared_cpu import shared_cpu
from tests.slack_e2e_support import dms, enroll, wait_status

CHANNEL = "C0001"
ENROLLED = "U1"
BROADCAST = "<!channel> standup.m4a"
DISGUISED = "<https://evil.example|results>.m4a"
RAW_MARKUP = re.compile(r"<[!#@]|<https?:")


def mrkdwn_texts(text: str, blocks: list) -> list[str]:
    """Everything Slack parses as mrkdwn in a message: the fallback text and every mrkdwn object."""
    found = [text]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node.get("text", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def assert_inert(msg: SlackMessage | tuple[str, list]) -> None:
    """No live markup but the mention of the enrolled member that the bot itself writes."""
    text, blocks = (msg.text, msg.blocks) if isinstance(msg, SlackMessage) else msg
    for part in mrkdwn_texts(text, blocks):
        assert not RAW_MARKUP.search(part.replace(f"<@{ENROLLED}>", "")), part


# -- pure pieces ------------------------------------------------------------------------------------

def test_escape_makes_markup_inert_and_keeps_one_line():
    wj = "\u2060"
    assert escape("<!channel> Q&A <https://x.example|y>") == f"&lt;!channel&gt; Q&amp;A &lt;https:{wj}//x.example|y&gt;"
    assert escape("a\nb\r\n*fake bot line*\u2028c\x85d") == "a b \u2217fake bot line\u2217 c d"
    assert escape("plain.m4a") == "plain.m4a"


def test_public_reason_shows_media_problems_and_hides_internals():
    assert public_reason("silent", "The recording is silent.", "R1") == "The recording is silent."
    assert "http" not in public_reason("too_large", "refused, see https://engine.internal/x for details", "R1")
    internal = public_reason("engine_unavailable", "the engine server at http://10.1.2.3:8100 is failing "
                                                   "(ClientConnectorError: refused)", "ABC123")
    assert "ABC123" in internal and "10.1.2.3" not in internal and "Client" not in internal


@pytest.mark.parametrize("name", [BROADCAST, DISGUISED, "a & b\n<@U999>.wav"])
def test_messages_escape_the_file_name(name):
    assert_inert(render_progress(name, 0.5))
    assert escape(name) in render_progress(name).text
    assert_inert(render_failure(name, "not_audio", f"{name} is a PDF file, not audio or video.", ref="R1"))
    assert_inert(render_failure(name, "internal", f"{name} broke", ref="R1"))
    summary = Summary(duration=60.0, speakers=[SpeakerStats(
        speaker="SPEAKER_00", user_id="U1", confidence=80.0, talk_time=30.0, share=1.0, turns=2,
        longest_turn=20.0)], segments=[])
    msg = render_summary(summary, file_name=name, recording_id=1)
    assert_inert(msg)
    assert "<@U1>" in json.dumps(msg.blocks)  # mentions we build ourselves stay live
    assert msg.blocks[0]["text"] == {"type": "plain_text", "text": f"Who spoke in {name}", "emoji": False}


def test_chart_draws_names_with_dollar_signs_as_text():
    from bot.schema import SpeakerTurn
    from bot.summary.chart import timeline_png

    summary = Summary(duration=10.0, speakers=[SpeakerStats(
        speaker="S0", user_id="U1", confidence=80.0, talk_time=5.0, share=1.0, turns=1, longest_turn=5.0)],
        segments=[SpeakerTurn("S0", 0.0, 5.0)])
    png = timeline_png(summary, {"U1": r"$\fra{ broken math"}, title=r"Who spoke when in $\fra{.m4a")
    assert png.startswith(b"\x89PNG")


# -- end to end -------------------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory):
    """The bot with an engine server that is down: every engine call fails with its URL in the error."""
    from bot.engines.http import HTTPEngine, RetryPolicy
    from storage.voiceprints import upsert_voiceprint

    fake = FakeSlack()
    await fake.start()
    fake.members[CHANNEL] = [ENROLLED, "UBOT"]
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('untrusted-text') / 'voiceid.db'}"
    await upgrade(url)
    db = Database(url)
    engine = HTTPEngine(f"http://127.0.0.1:{closed_port()}", "engine-key", engine_id="server", name="the engine server",
                        recommended_threshold=60.0, retry=RetryPolicy(attempts=1))
    await upsert_voiceprint(db, team_id=TEAM_ID, user_id=ENROLLED, engine=engine.engine_id, model_id="m",
                            voiceprint="AAAA", consent_at=utcnow(), clip_duration=10.0)
    bot = await BotUnderTest(fake, bot_settings(fake, url, job_max_attempts=1), db, engine, cpu=shared_cpu()).start()
    yield fake, db, bot
    await bot.stop()
    await engine.close()
    await db.dispose()
    await fake.close()


def bot_messages(fake: FakeSlack) -> list[tuple[str, list]]:
    return [(c.params.get("text", ""), c.params.get("blocks") or [])
            for c in fake.calls_to("chat.postMessage") + fake.calls_to("chat.update")]


e2e = pytest.mark.asyncio(loop_scope="module")


async def failure_in_thread(fake: FakeSlack, thread_ts: str):
    """The failure message (the job's status turns failed just before it is posted)."""
    failures = lambda: [m for m in fake.thread(CHANNEL, thread_ts) if m.text.startswith("Could not identify")]
    return (await fake.wait_for(failures, timeout=30, what="the failure message"))[0]


@e2e
async def test_engine_failure_shows_a_ref_and_logs_the_details(world, caplog):
    fake, db, bot = world
    caplog.set_level(logging.INFO)
    f = fake.add_file(BROADCAST, "audio/mp4", b"\x00" * 2048)
    event = bot.share_event(f)
    assert (await bot.event(event, event_id="EvBroadcast")).status == 200
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.state.value == "failed" and rec.error_code == "engine_unavailable", rec.error_message
    reply = await failure_in_thread(fake, event["ts"])
    posted = [c.params.get("text") for c in fake.calls_to("chat.postMessage")]
    assert "Identifying speakers in &lt;!channel&gt; standup.m4a…" in posted
    assert reply.text.startswith("Could not identify speakers in &lt;!channel&gt; standup.m4a: something went")
    ref = re.search(r"\(ref ([0-9A-F]{6})\)", reply.text).group(1)
    shown = json.dumps([reply.text, reply.blocks])
    assert "127.0.0.1" not in shown and "Client" not in shown and "HTTP" not in shown
    logged = [r.getMessage() for r in caplog.records if f"ref {ref}" in r.getMessage()]
    assert logged and "127.0.0.1" in logged[0], logged
    for msg in bot_messages(fake):
        assert_inert(msg)


@e2e
async def test_media_problem_stays_specific_with_the_name_escaped(world):
    fake, db, bot = world
    f = fake.add_file(DISGUISED, "audio/mp4", b"irrelevant", serve_html=True)
    event = bot.share_event(f)
    await bot.event(event, event_id="EvDisguised")
    rec = await wait_status(fake, db, f.id, {"failed", "posted"}, timeout=60)
    assert rec.error_code == "html_page"
    reply = await failure_in_thread(fake, event["ts"])
    assert "web page instead of" in reply.text and "ref " not in reply.text
    assert "&lt;" in reply.text and "<https://evil" not in json.dumps([reply.text, reply.blocks])
    for msg in bot_messages(fake):
        assert_inert(msg)


@e2e
async def test_unknown_subcommand_is_echoed_as_text(world):
    _, _, bot = world
    resp = await bot.command("U2", "<!channel> <https://evil.example|x>")
    text = (await resp.json())["text"] if resp.content_type == "application/json" else await resp.text()
    assert "&lt;!channel&gt;" in text and not RAW_MARKUP.search(text), text


@e2e
async def test_enrollment_failures_in_dms(world):
    fake, _, bot = world
    down = await enroll(bot, fake, "U3", b"RIFF....WAVE", name="me.wav")
    assert down.startswith(":warning: Your voice was not enrolled: something went wrong on our side (ref ")
    assert "127.0.0.1" not in down and "Client" not in down
    html = await enroll(bot, fake, "U4", b"RIFF", name="<!channel>.wav", serve_html=True)
    assert "web page instead of &lt;!channel&gt;.wav" in html, html
    for user in ("U3", "U4"):
        for text in dms(fake, user):
            assert not RAW_MARKUP.search(text), text
