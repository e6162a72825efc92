"""A small synchronous client for the simulator's HTTP control API (stdlib urllib)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class SimulatorApiError(Exception):
    """The control API refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator control API: {status} {message}")
        self.status = status
        self.message = message


class SimulatorClient:
    """``SimulatorClient("http://127.0.0.1:PORT")``: drive a simulator from any process."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = str(exc.reason)
            raise SimulatorApiError(exc.code, message) from None

    # -- world -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/health")
        return result

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the MTProto server."""
        info = self.health()
        return info["host"], int(info["port"])

    def create_bot(self, username: str | None = None, first_name: str | None = None) -> Any:
        """Returns {"id", "token", "username", "first_name", "pts"}."""
        return self.request("POST", "/bots", {"username": username, "first_name": first_name})

    def bots(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/bots")["bots"]
        return result

    def create_user(
        self,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        lang_code: str | None = None,
    ) -> Any:
        """Returns {"id", "first_name", "last_name", "username", "lang_code"};
        ``lang_code`` is the language of the user's app, which bots see."""
        body = {
            "first_name": first_name,
            "last_name": last_name,
            "username": username,
            "lang_code": lang_code,
        }
        return self.request("POST", "/users", body)

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/users")["users"]
        return result

    def send(
        self,
        user_id: int,
        bot_id: int,
        text: str = "",
        *,
        photo: bool = False,
        reply_to: int | None = None,
        count: int = 1,
        media: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The user writes to the bot; returns [{"id", "pts", "photo_id", "media"}] (bot-side
        ids). ``media``: {"type": "document"|"voice"|"video", "file_name"?, "mime_type"?,
        "size"?, "duration"?, "width"?, "height"?} sends a file (its metadata)."""
        body: dict[str, Any] = {"bot_id": bot_id, "text": text, "photo": photo}
        body.update(reply_to=reply_to, count=count, media=media)
        result: list[dict[str, Any]] = self.request("POST", f"/users/{user_id}/messages", body)[
            "messages"
        ]
        return result

    def received(
        self, user_id: int, bot_id: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """What bots sent the user: [{"bot_id", "message_id", "date", "text", "reply_to",
        "media", "markup", "edited_at", "edit_date", "deleted", "chat_id"}], oldest first."""
        query = f"?offset={offset}" + ("" if bot_id is None else f"&bot_id={bot_id}")
        result: list[dict[str, Any]] = self.request("GET", f"/users/{user_id}/received{query}")[
            "messages"
        ]
        return result

    def wait_received(
        self, user_id: int, count: int, bot_id: int | None = None, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll until the user has received at least ``count`` messages, or raise."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.received(user_id, bot_id)
            if len(items) >= count:
                return items
            if time.monotonic() > deadline:
                raise TimeoutError(f"user {user_id} received {len(items)} of {count} messages")
            time.sleep(0.05)

    def create_group(self, title: str, member_ids: list[int]) -> Any:
        """A basic group of users and bots: returns {"id", "title", "member_ids"}. Telethon
        addresses it as chat id ``-id``."""
        return self.request("POST", "/groups", {"title": title, "member_ids": member_ids})

    def groups(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/groups")["groups"]
        return result

    def send_group(
        self, user_id: int, group_id: int, text: str = "", *, photo: bool = False, count: int = 1
    ) -> list[dict[str, Any]]:
        """A member posts in the group; returns each bot's copy: [{"bot_id", "id", "pts"}]."""
        body = {"user_id": user_id, "text": text, "photo": photo, "count": count}
        result: list[dict[str, Any]] = self.request("POST", f"/groups/{group_id}/messages", body)[
            "messages"
        ]
        return result

    def block(self, user_id: int, bot_id: int, blocked: bool = True) -> int | None:
        """The user blocks (unblocks) the bot; the bot gets UpdateBotStopped. Returns the
        bot's new qts (None when nothing changed)."""
        body = {"bot_id": bot_id, "blocked": blocked}
        qts: int | None = self.request("POST", f"/users/{user_id}/block", body).get("qts")
        return qts

    def press(
        self,
        user_id: int,
        bot_id: int,
        message_id: int,
        *,
        text: str | None = None,
        data: str | bytes | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The user presses an inline button (by its text or its callback data) of a bot's
        message and waits for the bot's answer: returns {"query_id", "answered",
        "timed_out", "message", "alert", "url", "cache_time", "data", "data_b64", ...}."""
        body: dict[str, Any] = {"bot_id": bot_id, "message_id": message_id}
        if text is not None:
            body["text"] = text
        if isinstance(data, bytes):
            body["data_b64"] = base64.b64encode(data).decode()
        elif data is not None:
            body["data"] = data
        if timeout is not None:
            body["timeout"] = timeout
        wait = self.timeout + (timeout or 0)
        result: dict[str, Any] = self.request("POST", f"/users/{user_id}/press", body, wait)
        return result

    def presses(self, user_id: int, bot_id: int | None = None) -> list[dict[str, Any]]:
        """Every button press of the user (newest last), with the bots' answers."""
        query = "" if bot_id is None else f"?bot_id={bot_id}"
        result: list[dict[str, Any]] = self.request("GET", f"/users/{user_id}/presses{query}")[
            "presses"
        ]
        return result

    def edit(self, user_id: int, bot_id: int, message_id: int, text: str) -> int:
        """The user edits a message they sent the bot (bot-side id); returns the bot's pts."""
        body = {"bot_id": bot_id, "message_id": message_id, "text": text}
        return int(self.request("POST", f"/users/{user_id}/edit", body)["pts"])

    def add_member(self, group_id: int, member_id: int, actor_id: int) -> list[dict[str, Any]]:
        """``actor_id`` adds a user or bot to the group: [{"bot_id", "id", "pts"}]."""
        body = {"member_id": member_id, "actor_id": actor_id}
        result: list[dict[str, Any]] = self.request("POST", f"/groups/{group_id}/add", body)[
            "messages"
        ]
        return result

    def remove_member(self, group_id: int, member_id: int, actor_id: int) -> list[dict[str, Any]]:
        """``actor_id`` removes a user or bot from the group: [{"bot_id", "id", "pts"}]."""
        body = {"member_id": member_id, "actor_id": actor_id}
        result: list[dict[str, Any]] = self.request("POST", f"/groups/{group_id}/remove", body)[
            "messages"
        ]
        return result

    # -- limits, faults, stats -----------------------------------------------------------------

    def limits(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/limits")
        return result

    def set_limits(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/limits", changes)
        return result

    def bot(self, bot_id: int) -> dict[str, Any]:
        """The bot as the simulator has it ({"id", "username", "stars", "paid_messages", ...})."""
        result: dict[str, Any] = self.request("GET", f"/bots/{bot_id}")
        return result

    def set_stars(self, bot_id: int, stars: float) -> dict[str, Any]:
        """Set the bot's Stars balance; returns the bot ({"stars", "paid_messages", ...})."""
        result: dict[str, Any] = self.request("POST", f"/bots/{bot_id}/stars", {"stars": stars})
        return result

    def drop_connections(self) -> int:
        return int(self.request("POST", "/faults/drop-connections", {})["dropped"])

    def stall(self, seconds: float) -> None:
        self.request("POST", "/faults/stall", {"seconds": seconds})

    def force_flood(self, bot_id: int, seconds: float) -> None:
        self.request("POST", "/faults/flood", {"bot_id": bot_id, "seconds": seconds})

    def forget_auth_keys(self, bot_id: int) -> int:
        """The server forgets the bot's auth keys (its clients get -404 and must log in
        again); returns how many it forgot."""
        body = {"bot_id": bot_id}
        return int(self.request("POST", "/faults/forget-auth-keys", body)["forgotten"])

    def lose_pushes(self, bot_id: int, count: int) -> None:
        self.request("POST", "/faults/lose-pushes", {"bot_id": bot_id, "count": count})

    def hold_pushes(
        self, bot_id: int, seconds: float | None = None, then: str = "too_long"
    ) -> None:
        """Hold back the bot's pushes (kept in its history) for ``seconds`` (None: until
        :meth:`release_pushes`). When the hold ends the bot's listeners get
        ``updatesTooLong`` (``then="too_long"``: they call getDifference), the held pushes
        late (``"deliver"``), or nothing (``"drop"``: the next push shows a pts gap)."""
        body = {"bot_id": bot_id, "seconds": seconds, "then": then}
        self.request("POST", "/faults/hold-pushes", body)

    def release_pushes(self, bot_id: int, then: str | None = None) -> int:
        """End a hold now (as the hold said, or as ``then`` says); returns how many updates
        it held back."""
        body = {"bot_id": bot_id, "then": then}
        return int(self.request("POST", "/faults/release-pushes", body)["held"])

    def flood_method(self, bot_id: int, method: str, seconds: float) -> None:
        """Every call of ``method`` ("contacts.resolveUsername", "users.getUsers", ... or
        "*" for all but login) by the bot answers FLOOD_WAIT_X for ``seconds``."""
        body = {"bot_id": bot_id, "method": method, "seconds": seconds}
        self.request("POST", "/faults/method-flood", body)

    def rehash_user(self, user_id: int, bot_id: int | None = None) -> None:
        """The user's access hash changes as every bot (or only ``bot_id``) sees it: the old
        one answers PEER_ID_INVALID; the new one comes with the user's next update, and
        from contacts.resolveUsername."""
        self.request("POST", f"/users/{user_id}/rehash", {"bot_id": bot_id})

    def refuse_connections(self, seconds: float) -> None:
        self.request("POST", "/faults/refuse-connections", {"seconds": seconds})

    def restart(self, downtime: float = 0.0) -> None:
        self.request("POST", "/faults/restart", {"downtime": downtime})

    def save(self) -> None:
        self.request("POST", "/save", {})

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/stats")
        return result

    def rsa_public_pem(self) -> str:
        return str(self.request("GET", "/rsa-key")["pem"])

    def write_rsa_key(self, path: str | Path) -> Path:
        """Have the simulator write its PKCS#1 public key PEM to ``path``."""
        return Path(self.request("POST", "/rsa-key", {"path": str(path)})["path"])
