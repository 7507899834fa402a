"""A fake Slack Web API on 127.0.0.1 for the bot's end-to-end tests.

It is a real HTTP server (aiohttp) that the real slack_sdk client talks to through `SLACK_API_URL`:
it records every call, checks the bot token, serves file downloads behind a Bearer check, implements
the external upload flow used by `files_upload_v2`, and can answer 429 with `Retry-After`.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

BOT_TOKEN = "xoxb-fake-bot-token"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0001"
APP_TOKEN = "xapp-fake-app-token"  # Socket Mode's app-level token: only for apps.connections.open


@dataclass
class Call:
    method: str
    params: dict
    token: str | None
    done: bool = False  # the call took effect (False when answered 429/500 before doing it)


@dataclass
class Gate:
    """Holds the requests it matches until `open()`; `reached` is set when the first one arrives, so a test
    knows the bot is inside that very call (and can kill it there). Once open it holds nothing, and a held
    request goes on as if it had only been slow: the call takes effect, a dead caller never sees the answer."""

    match: Callable[[dict], bool] = lambda params: True
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def hold(self, params: dict) -> None:
        if not self.opened.is_set() and self.match(params):
            self.reached.set()
            await self.opened.wait()

    def open(self) -> None:
        self.opened.set()


@dataclass
class FakeFile:
    id: str
    name: str
    mimetype: str
    data: bytes
    user: str = "U0"
    serve_html: bool = False  # answer the download with an HTML login page, as Slack does for a bad token
    duration_ms: int | None = None  # the length Slack states for audio and video files, when it does
    stall: bool = False  # send half the bytes, then hold the download open until `FakeSlack.unstall` is set
    url: str | None = None  # where files.info says to download it (default: this fake's own download route)

    @property
    def filetype(self) -> str:
        return self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list
    thread_ts: str | None = None
    user: str = BOT_USER_ID
    history: list = field(default_factory=list)
    metadata: dict | None = None
    bot_id: str | None = BOT_ID  # set on messages an app posted (None: a person's)


class FakeSlack:
    def __init__(self, *, token: str = BOT_TOKEN, team_id: str = TEAM_ID, first_id: int = 1):
        self.token = token
        self.tokens = {token}  # every bot token this workspace accepts (rotation adds new ones)
        self.team_id = team_id
        self.calls: list[Call] = []
        self.files: dict[str, FakeFile] = {}
        self.members: dict[str, list[str]] = {}
        self.users: dict[str, str] = {}
        self.admins: set[str] = set()  # users.info says is_admin (workspace admins) …
        self.owners: set[str] = set()  # … or is_owner (workspace owners)
        self.responses: list[dict] = []  # what the bot sent to a slash command's response_url
        self.messages: dict[tuple[str, str], Message] = {}
        self.uploads: dict[str, bytes] = {}
        self.rate_limit: dict[str, int] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token → the access token it rotates
        self.enterprise_install: str | None = None  # an enterprise id: oauth.v2.access answers an org-wide install
        self.revoked: list[str] = []  # tokens revoked with auth.revoke
        self._token: str | None = None
        self.retry_after = 1
        self.sockets: list[web.WebSocketResponse] = []  # Socket Mode connections from the bot
        self.acks: dict[str, dict] = {}  # envelope_id → the bot's acknowledgement
        self.unstall = asyncio.Event()
        self.server_errors: dict[str, int] = {}  # method → answer 500 this many times, without doing the call
        self.matched_errors: list[list] = []  # [method, match(params), times]: see `fail`
        self.downloads: list[str] = []  # ids of the files whose bytes were fetched
        self.lost_answers: dict[str, int] = {}  # method → do the call, then answer 500 this many times
        self.gates: dict[str, Gate] = {}  # see `gate`
        self.homes: dict[str, dict] = {}  # user id → the Home view last published to them (views.publish)
        self.chaos = 0.0  # probability of a random 429, 500-before or 500-after-doing for any Web API call
        self.chaos_rng = random.Random(0)
        self._ids = itertools.count(first_id)  # file ids: fakes sharing one database need distinct ranges
        self._clock = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base = ""

    # -- setup ------------------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024**2)
        app.add_routes([web.route("*", "/api/{method}", self._api),
                        web.get("/files/{id}/{name}", self._download),
                        web.post("/upload/{id}", self._upload), web.get("/socket", self._socket),
                        web.post("/respond", self._respond)])
        app.on_shutdown.append(self._close_sockets)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self.api_url

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def add_file(self, name: str, mimetype: str, data: bytes, *, user: str = "U0", serve_html: bool = False,
                 url: str | None = None) -> FakeFile:
        f = FakeFile(id=f"F{next(self._ids):06d}", name=name, mimetype=mimetype, data=data, user=user,
                     serve_html=serve_html, url=url)
        self.files[f.id] = f
        return f

    def fail(self, method: str, match: Callable[[dict], bool], times: int) -> None:
        """Answer 500, without doing the call, to the next `times` calls of `method` whose params `match`."""
        self.matched_errors.append([method, match, times])

    def _matched_error(self, method: str, params: dict) -> bool:
        for fault in self.matched_errors:
            if fault[0] == method and fault[2] > 0 and fault[1](params):
                fault[2] -= 1
                return True
        return False

    def gate(self, method: str, match: Callable[[dict], bool] = lambda params: True) -> Gate:
        """Holds calls of `method` (a Web API method; "download": a file download, after half its bytes;
        "upload": the bytes of an external upload) whose params `match` until the gate is opened."""
        self.gates[method] = Gate(match)
        return self.gates[method]

    async def _hold(self, method: str, params: dict) -> None:
        if (gate := self.gates.get(method)) is not None:
            await gate.hold(params)

    def issue_tokens(self, access: str | None = None) -> tuple[str, str]:
        """An accepted bot token and the refresh token that rotates it (an install with token rotation)."""
        access = access or f"xoxb-rotated-{next(self._ids)}"
        refresh = f"xoxe-1-refresh-{next(self._ids)}"
        self.tokens.add(access)
        self.refresh_tokens[refresh] = access
        return access, refresh

    def file_object(self, f: FakeFile) -> dict:
        """The file as it appears in events and `files.info`."""
        return {"id": f.id, "name": f.name, "title": f.name, "mimetype": f.mimetype, "filetype": f.filetype,
                "size": len(f.data), "user": f.user, "mode": "hosted",
                **({"duration_ms": f.duration_ms} if f.duration_ms is not None else {}),
                "permalink": f"https://fake.slack.com/files/{f.user}/{f.id}/{quote(f.name, safe='')}",
                "url_private": f.url or f"{self.base}/files/{f.id}/{quote(f.name, safe='')}",
                "url_private_download": f.url or f"{self.base}/files/{f.id}/{quote(f.name, safe='')}"}

    # -- inspection -------------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return sorted((m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts),
                      key=lambda m: float(m.ts))

    async def one_reply(self, channel: str, thread_ts: str, shows: str = "", timeout: float = 30.0) -> Message:
        """The thread's one message once it holds exactly one (showing `shows`). A progress reply and a fast
        job's outcome can race; the bot then deletes the one stored second right after
        (`bot.slack_api.replies.keep_stored`), so for a moment the thread may hold both."""
        def settled():
            thread = self.thread(channel, thread_ts)
            return thread[0] if len(thread) == 1 and shows in thread[0].text else None

        try:
            return await self.wait_for(settled, timeout, what=f"one reply showing {shows!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the thread: {[m.text[:80] for m in self.thread(channel, thread_ts)]}") from None

    async def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition"):
        """Poll until `predicate()` (a plain or async function) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(0.05)

    # -- HTTP -------------------------------------------------------------------------------------
    def _ts(self) -> str:
        return f"{1700000000 + next(self._clock)}.000100"

    async def _params(self, request: web.Request) -> dict:
        params = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.method == "POST":
            params.update(dict(await request.post()))
        for key in ("blocks", "view", "files", "attachments"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else params.get("token")
        if auth.startswith("Basic "):  # oauth.v2.access: the app's client id and secret
            import base64

            params["client_id"], _, params["client_secret"] = base64.b64decode(auth[6:]).decode().partition(":")
        call = Call(method, params, token)
        self.calls.append(call)
        fault = self.chaos_rng.choice(("429", "500", "lost")) if self.chaos_rng.random() < self.chaos else None
        if self.rate_limit.get(method, 0) > 0 or fault == "429":
            self.rate_limit[method] = max(0, self.rate_limit.get(method, 0) - 1)
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(self.retry_after)})
        if self.server_errors.get(method, 0) > 0 or fault == "500" or self._matched_error(method, params):
            self.server_errors[method] = max(0, self.server_errors.get(method, 0) - 1)
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        accepted = {APP_TOKEN} if method == "apps.connections.open" else self.tokens
        if method != "oauth.v2.access" and token not in accepted:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        await self._hold(method, params)
        self._token = token  # the caller's token, for the handler called right now (auth.revoke)
        answer = handler(params)
        call.done = bool(answer.get("ok"))
        if self.lost_answers.get(method, 0) > 0 or fault == "lost":
            self.lost_answers[method] = max(0, self.lost_answers.get(method, 0) - 1)
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        return web.json_response(answer)

    async def _download(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["id"])
        if f is None:
            return web.Response(status=404, text="not found")
        self.downloads.append(f.id)
        if f.serve_html or request.headers.get("Authorization", "")[len("Bearer "):] not in self.tokens:
            return web.Response(text="<!DOCTYPE html><html><body>Sign in to Slack</body></html>",
                                content_type="text/html")
        gate = self.gates.get("download")
        if f.stall or (gate is not None and gate.match({"file": f.id}) and not gate.opened.is_set()):
            resp = web.StreamResponse(headers={"Content-Type": f.mimetype, "Content-Length": str(len(f.data))})
            await resp.prepare(request)
            await resp.write(f.data[:len(f.data) // 2])
            if f.stall:
                await self.unstall.wait()
                return resp
            await self._hold("download", {"file": f.id})
            await resp.write(f.data[len(f.data) // 2:])
            await resp.write_eof()
            return resp
        return web.Response(body=f.data, content_type=f.mimetype)

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        await self._hold("upload", {"file": request.match_info["id"]})
        self.uploads[request.match_info["id"]] = data
        return web.Response(text="OK - " + str(len(self.uploads[request.match_info["id"]])))

    async def _respond(self, request: web.Request) -> web.Response:
        """A slash command's `response_url` (bolt's `respond`)."""
        self.responses.append(await request.json())
        return web.Response(text="ok")

    # -- Socket Mode ----------------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "connection_info": {"app_id": "A0001"}})
        try:
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    ack = json.loads(msg.data)
                    self.acks[ack.get("envelope_id", "")] = ack
        finally:
            self.sockets.remove(ws)
        return ws

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close()

    async def socket_envelope(self, kind: str, payload: dict, timeout: float = 30.0) -> dict:
        """Send one envelope to the connected bot, as Slack does in Socket Mode; returns the bot's ack."""
        await self.wait_for(lambda: self.sockets, timeout=timeout, what="a Socket Mode connection")
        envelope_id = f"env-{next(self._ids)}"
        await self.sockets[-1].send_json({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                          "accepts_response_payload": kind != "events_api"})
        return await self.wait_for(lambda: self.acks.get(envelope_id), timeout=timeout, what=f"ack of {kind}")

    # -- Web API methods ----------------------------------------------------------------------------
    def _m_apps_connections_open(self, p: dict) -> dict:
        return {"ok": True, "url": "ws" + self.base[len("http"):] + "/socket"}

    def _m_auth_test(self, p: dict) -> dict:
        return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "voice-id",
                "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _m_chat_postMessage(self, p: dict) -> dict:
        ts = self._ts()
        metadata = p.get("metadata")
        m = Message(channel=p["channel"], ts=ts, text=p.get("text", ""), blocks=p.get("blocks") or [],
                    thread_ts=p.get("thread_ts"), metadata=json.loads(metadata) if isinstance(metadata, str) else metadata)
        self.messages[(m.channel, ts)] = m
        return {"ok": True, "channel": m.channel, "ts": ts, "message": {"text": m.text, "ts": ts}}

    def _m_chat_update(self, p: dict) -> dict:
        m = self.messages.get((p["channel"], p["ts"]))
        if m is None:
            return {"ok": False, "error": "message_not_found"}
        if m.user != BOT_USER_ID:  # as Slack: an app edits only its own messages
            return {"ok": False, "error": "cant_update_message"}
        m.history.append((m.text, m.blocks))
        m.text, m.blocks = p.get("text", m.text), p.get("blocks") or []
        return {"ok": True, "channel": m.channel, "ts": m.ts, "text": m.text}

    def _m_chat_getPermalink(self, p: dict) -> dict:
        return {"ok": True, "channel": p["channel"],
                "permalink": f"https://fake.slack.com/archives/{p['channel']}/p{str(p['message_ts']).replace('.', '')}"}

    def _m_chat_delete(self, p: dict) -> dict:
        if self.messages.pop((p["channel"], p["ts"]), None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": p["channel"], "ts": p["ts"]}

    def _m_conversations_replies(self, p: dict) -> dict:
        """The thread's bot replies (the root message itself is not stored by this fake)."""
        messages = [{"type": "message", "user": m.user, "text": m.text, "ts": m.ts, "thread_ts": m.thread_ts,
                     **({"metadata": m.metadata} if m.metadata else {}), **({"bot_id": m.bot_id} if m.bot_id else {})}
                    for m in self.thread(p["channel"], p["ts"])]
        return {"ok": True, "messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _m_chat_postEphemeral(self, p: dict) -> dict:
        """As Slack: only to someone in the channel (when the test set who is; a public channel can be read
        without joining it)."""
        if p.get("channel") in self.members and p.get("user") not in self.members[p["channel"]]:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._ts()}

    def _m_views_open(self, p: dict) -> dict:
        return {"ok": True, "view": {**p["view"], "id": f"V{next(self._ids):06d}"}}

    _m_views_update = _m_views_open
    _m_views_push = _m_views_open

    def _m_views_publish(self, p: dict) -> dict:
        """A user's Home tab, as Slack checks it: a `home` view of at most 100 blocks, to a user."""
        view, user = p.get("view") or {}, p.get("user_id") or ""
        if not user.startswith(("U", "W")):
            return {"ok": False, "error": "invalid_arguments"}
        if view.get("type") != "home" or not 0 < len(view.get("blocks") or []) <= 100:
            return {"ok": False, "error": "invalid_arguments"}
        self.homes[user] = view
        return {"ok": True, "view": {**view, "id": f"V{next(self._ids):06d}"}}

    def _m_files_info(self, p: dict) -> dict:
        f = self.files.get(p.get("file", ""))
        if f is None:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": self.file_object(f)}

    def _m_files_getUploadURLExternal(self, p: dict) -> dict:
        f = self.add_file(p["filename"], "image/png", b"")
        return {"ok": True, "upload_url": f"{self.base}/upload/{f.id}", "file_id": f.id}

    def _m_files_completeUploadExternal(self, p: dict) -> dict:
        done = []
        for item in p.get("files") or []:
            f = self.files[item["id"]]
            f.data = self.uploads.get(f.id, b"")
            done.append({**self.file_object(f), "title": item.get("title", f.name)})
        return {"ok": True, "files": done}

    def _m_files_delete(self, p: dict) -> dict:
        """Deletes a file; the bot may delete only what it uploaded itself (the fake's uploads)."""
        f = self.files.get(p.get("file", ""))
        if f is None:
            return {"ok": False, "error": "file_not_found"}
        if f.id not in self.uploads:
            return {"ok": False, "error": "cant_delete_file"}
        del self.files[f.id]
        return {"ok": True}

    def _m_conversations_members(self, p: dict) -> dict:
        return {"ok": True, "members": self.members.get(p.get("channel", ""), []),
                "response_metadata": {"next_cursor": ""}}

    def _m_conversations_open(self, p: dict) -> dict:
        return {"ok": True, "channel": {"id": "D" + str(p.get("users", "U0"))}}

    def _m_users_info(self, p: dict) -> dict:
        uid = p.get("user", "")
        name = self.users.get(uid, uid)
        return {"ok": True, "user": {"id": uid, "team_id": self.team_id, "name": name.lower(), "real_name": name,
                                     "is_admin": uid in self.admins or uid in self.owners,
                                     "is_owner": uid in self.owners, "deleted": False,
                                     "profile": {"display_name": name, "real_name": name}}}

    def _m_oauth_v2_access(self, p: dict) -> dict:
        """Code exchange (an install) or, with grant_type=refresh_token, a token rotation."""
        if p.get("client_id") != "111.222" or not p.get("client_secret"):
            return {"ok": False, "error": "invalid_client_id"}
        rotating = p.get("grant_type") == "refresh_token"
        if rotating and p.get("refresh_token") not in self.refresh_tokens:
            return {"ok": False, "error": "invalid_refresh_token"}
        if not rotating and p.get("code") != "good-code":
            return {"ok": False, "error": "invalid_code"}
        if rotating:  # from now on Slack accepts only the new access token
            self.tokens.discard(self.refresh_tokens[p["refresh_token"]])
        token, refresh = self.issue_tokens(None if rotating else self.token)
        org = self.enterprise_install
        return {"ok": True, "access_token": token, "token_type": "bot", "scope": "commands,chat:write",
                "bot_user_id": BOT_USER_ID, "app_id": "A0001",
                "team": None if org else {"id": self.team_id, "name": "Fake"},
                "enterprise": {"id": org, "name": "Fake Org"} if org else None, "is_enterprise_install": bool(org),
                "authed_user": {"id": "U0"}, "refresh_token": refresh, "expires_in": 43200}

    def _m_auth_revoke(self, p: dict) -> dict:
        """The token in use stops working."""
        self.revoked.append(self._token)
        self.tokens.discard(self._token)
        return {"ok": True, "revoked": True}

# -- the bot under test, served for real, with correctly signed requests ------------------------------
SIGNING_SECRET = "test-signing-secret"


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                   content_type: str = "application/json") -> dict:
    from slack_sdk.signature import SignatureVerifier

    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts, "Content-Type": content_type,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)}


def bot_settings(fake: FakeSlack, database_url: str, **overrides):
    from bot.config import Settings

    values = {"slack_bot_token": fake.token, "slack_signing_secret": SIGNING_SECRET, "slack_api_url": fake.api_url,
              "slack_client_id": None, "slack_client_secret": None, "slack_app_token": None,
              "database_url": database_url, "job_poll_seconds": 0.2, "job_lease_seconds": 5,
              "engine_webhook_secret": None, "job_retry_base_seconds": 0, "transcript": False}
    return Settings(_env_file=None, **(values | overrides))


class BotUnderTest:
    """The real aiohttp application (bolt app + job runner) on a real socket, driven like Slack drives it.
    `speech`: a recognizer double in place of the real one; `cpu`: a CPU pool its owner shares and closes (tests
    share one per process: its process starts once)."""

    def __init__(self, fake: FakeSlack, settings, db, engine, *, run_jobs: bool = True, speech=None, cpu=None):
        self.fake, self.settings, self.db, self.engine, self.run_jobs = fake, settings, db, engine, run_jobs
        self.speech, self.cpu_given = speech, cpu
        self.client = None
        self.services = None
        self.app = None

    async def start(self) -> BotUnderTest:
        from aiohttp.test_utils import TestClient, TestServer

        from bot.runtime import application
        from bot.services.context import Services

        self.services = Services(settings=self.settings, db=self.db, engine=self.engine)
        self.app = application(self.settings, run_jobs=self.run_jobs, given=self.services, speech_given=self.speech,
                               cpu_given=self.cpu_given)
        self.client = TestClient(TestServer(self.app, host="127.0.0.1"))
        await self.client.start_server()
        return self

    @property
    def runner(self):
        """The application's job runner."""
        from bot.runtime import RUNNER

        return self.app[RUNNER]

    @property
    def cpu(self):
        """The application's CPU pool."""
        from bot.runtime import CPU

        return self.app[CPU]

    async def drain(self) -> None:
        """Until the work listeners (and jobs) started in the background has ended."""
        from bot.runtime import BACKGROUND

        await self.app[BACKGROUND].wait()

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def crash(self) -> None:
        """Goes away as a crashed process does, as far as the database and Slack can tell: its job runner's
        pipelines stop, but the leases they hold are not released, so another instance takes their jobs over
        only once the leases expire (an orderly `stop` releases them at once)."""
        from unittest import mock

        async def nothing_released(db, owner: str) -> int:
            return 0

        with (mock.patch("storage.recordings.release", nothing_released),
              mock.patch("storage.enrollments.release_enrollments", nothing_released)):
            await self.stop()

    async def post(self, body: str, headers: dict):
        return await self.client.post("/slack/events", data=body.encode(), headers=headers)

    async def event(self, event: dict, *, event_id: str = "Ev1", retry: int | None = None, team_id: str = TEAM_ID):
        body = json.dumps({"token": "x", "team_id": team_id, "api_app_id": "A0001", "type": "event_callback",
                           "event_id": event_id, "event_time": int(time.time()), "event": event,
                           "authorizations": [{"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True}]})
        headers = signed_headers(body)
        if retry is not None:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return await self.post(body, headers)

    async def command(self, user: str, text: str = "", *, channel: str = "C0001"):
        from urllib.parse import urlencode

        body = urlencode({"token": "x", "team_id": TEAM_ID, "team_domain": "fake", "channel_id": channel,
                          "channel_name": "general", "user_id": user, "user_name": user.lower(),
                          "command": "/enroll", "text": text, "api_app_id": "A0001",
                          "response_url": f"{self.fake.base}/respond", "trigger_id": f"trig-{user}"})
        return await self.post(body, signed_headers(body, content_type="application/x-www-form-urlencoded"))

    async def interaction(self, payload: dict):
        from urllib.parse import urlencode

        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, signed_headers(body, content_type="application/x-www-form-urlencoded"))

    async def submit_view(self, user: str, view: dict, values: dict):
        return await self.interaction({
            "type": "view_submission", "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM_ID}, "api_app_id": "A0001", "trigger_id": "t",
            "view": {**view, "id": "VSUBMIT", "team_id": TEAM_ID, "state": {"values": values}}})

    async def press(self, user: str, action_id: str, value: str, *, channel: str, message_ts: str):
        return await self.interaction({
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM_ID}, "api_app_id": "A0001", "trigger_id": f"trig-{user}",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "channel": {"id": channel}, "message": {"ts": message_ts},
            "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                         "action_ts": str(time.time())}]})

    async def home_opened(self, user: str, *, tab: str = "home", event_id: str | None = None):
        """`app_home_opened`: the person opened the app's Home tab (or its Messages tab)."""
        return await self.event({"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": tab,
                                 "event_ts": f"{time.time():.6f}"},
                                event_id=event_id or f"EvHome{next(self.fake._ids)}")

    async def press_home(self, user: str, action_id: str, value: str):
        """A button in the person's Home tab (a `home` view's block_actions: no channel, no message)."""
        return await self.interaction({
            "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM_ID}, "api_app_id": "A0001", "trigger_id": f"trig-{user}",
            "container": {"type": "view", "view_id": f"VHOME{user}"},
            "view": {"id": f"VHOME{user}", "type": "home", "team_id": TEAM_ID, "blocks": [], "state": {"values": {}}},
            "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button",
                         "action_ts": str(time.time())}]})

    async def shortcut(self, user: str, message: dict, *, callback_id: str = "identify_speakers",
                       channel: str = "C0001"):
        """A message shortcut (`message_action`) pressed by `user` on `message` (as Slack sends it: its ts, user,
        text and files)."""
        return await self.interaction({
            "type": "message_action", "callback_id": callback_id, "team": {"id": TEAM_ID, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM_ID, "name": user.lower()}, "api_app_id": "A0001",
            "trigger_id": f"trig-{user}", "action_ts": str(time.time()), "message_ts": message["ts"],
            "channel": {"id": channel, "name": "general"}, "message": {"type": "message", **message},
            "response_url": f"{self.fake.base}/respond"})

    def share_event(self, f: FakeFile, *, channel: str = "C0001", user: str = "U0", ts: str | None = None) -> dict:
        return {"type": "message", "subtype": "file_share", "channel": channel, "channel_type": "channel",
                "user": user, "text": "", "ts": ts or f"{int(time.time())}.{next(self.fake._ids):06d}",
                "files": [self.fake.file_object(f)]}
