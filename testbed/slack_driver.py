"""Driving a bot the way Slack and its people do, for tests and benchmarks: the `/enroll` modal submitted with a
clip, the DMs a person got, and a `python -m bot serve` process (or a balancer before it) sent signed requests."""
from __future__ import annotations

import socket

import aiohttp

from testbed.fake_slack import BotUnderTest, FakeSlack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dms(fake: FakeSlack, user: str) -> list[str]:
    return [c.params.get("text", "") for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == user]


async def submit_enrollment(bot: BotUnderTest, fake: FakeSlack, user: str, data: bytes, *, name: str = "me.wav",
                            mimetype: str = "audio/wav", replace: bool = False, consent: bool = True,
                            voiceprint: str | None = None, **file_kw) -> dict:
    """/enroll → modal → view submission with the clip (consent ticked unless told) under the voiceprint name
    `voiceprint` (untold: what the modal's name field holds, else "default"); returns the JSON answer."""
    modals = lambda: [c for c in fake.calls_to("views.open") if c.params.get("trigger_id") == f"trig-{user}"]
    n = len(modals())
    assert (await bot.command(user)).status == 200
    view = (await fake.wait_for(lambda: modals()[n:], what="views.open"))[0].params["view"]
    f = fake.add_file(name, mimetype, data, user=user, **file_kw)
    values = {"clip": {"clip": {"type": "file_input", "files": [fake.file_object(f)]}},
              "consent": {"consent": {"type": "checkboxes",
                                      "selected_options": [{"value": "yes"}] if consent else []}}}
    if replace:
        values["replace"] = {"replace": {"type": "checkboxes", "selected_options": [{"value": "yes"}]}}
    [field] = [b["element"] for b in view["blocks"] if b.get("block_id") == "name"]
    values["name"] = {"name": {"type": "plain_text_input",
                               "value": voiceprint if voiceprint is not None else field.get("initial_value", "default")}}
    resp = await bot.submit_view(user, view, values)
    assert resp.status == 200
    return await resp.json()


class RemoteBot(BotUnderTest):
    """`BotUnderTest`'s signed Slack requests, sent to a `python -m bot serve` process (or a balancer before it)."""

    def __init__(self, fake: FakeSlack, base: str):
        super().__init__(fake, None, None, None)
        self.base = base

    async def post(self, body: str, headers: dict):
        url = f"{self.base}/slack/events"
        async with aiohttp.ClientSession() as http, http.post(url, data=body.encode(), headers=headers) as resp:
            await resp.read()  # kept for .json() after the session closes
            return resp
