"""Who the engine says spoke is data, not markup: a match label becomes a live `<@…>` mention only when it
is a Slack user id; anything else (a buggy or hostile engine, a third party under ENGINE=pyannoteai) is
shown escaped, in the summary and in the buttons' private replies."""
from __future__ import annotations

from types import SimpleNamespace

from bot.schema import SpeakerTurn
from bot.services.claims import not_me_refusal
from bot.summary.blocks import render_summary
from bot.summary.stats import SpeakerStats, Summary
from bot.text import mention
from tests.test_slack_untrusted_text import RAW_MARKUP, mrkdwn_texts

HOSTILE = "U1> <!channel> <https://evil.example|results"


def summary_named(user_id: str) -> Summary:
    return Summary(duration=10.0, speakers=[SpeakerStats(
        speaker="S0", user_id=user_id, confidence=80.0, talk_time=5.0, share=1.0, turns=1, longest_turn=5.0)],
        segments=[SpeakerTurn("S0", 0.0, 5.0)])


def test_mention_is_live_only_for_slack_user_ids():
    assert mention("U0123ABC") == "<@U0123ABC>" and mention("W0123ABC") == "<@W0123ABC>"
    assert not RAW_MARKUP.search(mention(HOSTILE)) and "&lt;!channel&gt;" in mention(HOSTILE)


def test_a_summary_naming_a_label_that_is_no_user_id_has_no_live_markup():
    msg = render_summary(summary_named(HOSTILE), file_name="standup.m4a", recording_id=1)
    for part in mrkdwn_texts(msg.text, msg.blocks):
        assert not RAW_MARKUP.search(part), part
    genuine = render_summary(summary_named("U0123ABC"), file_name="standup.m4a", recording_id=1)
    assert "<@U0123ABC>" in genuine.text


def test_refusals_quote_the_label_as_text(monkeypatch):
    from bot.services import claims

    monkeypatch.setattr(claims, "summary_of", lambda _: summary_named(HOSTILE))
    refusal = not_me_refusal(SimpleNamespace(), "S0", "U9")
    assert refusal and not RAW_MARKUP.search(refusal), refusal
