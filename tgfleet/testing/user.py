"""A simulated Telegram user talking to a bot: sends, presses buttons, and expects
what the bot does, waiting with a deadline and failing with what arrived instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tgfleet.simulator import SimulatorApiError, SimulatorClient
from tgfleet.testing.fleet import LocalFleet, RunningBot
from tgfleet.testing.messages import Answer, Labels, Received, describe_all
from tgfleet.testing.waiting import ExpectationFailed, wait_for

#: How long a user waits for the bot by default, seconds.
DEFAULT_TIMEOUT_S = 30.0
MessageRef = Received | int


class SimulatedUser:
    """``ann = tgfleet_user("Ann")``: a user of the simulator, talking to one bot (the
    test's only bot unless one is given)."""

    def __init__(
        self,
        simulator: SimulatorClient,
        local_fleet: LocalFleet,
        info: dict[str, Any],
        bot: RunningBot | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.simulator = simulator
        self.id = int(info["id"])
        self.name = str(info.get("first_name") or self.id)
        self.username: str | None = info.get("username")
        self.timeout = timeout
        self._fleet = local_fleet
        self._bot = bot
        self._cursor = 0  # replies before this index were expected already

    def __repr__(self) -> str:
        return f"SimulatedUser({self.name!r}, id={self.id})"

    @property
    def bot(self) -> RunningBot:
        """The bot this user talks to."""
        if self._bot is None:
            bots = self._fleet.bots
            if len(bots) != 1:
                raise ExpectationFailed(
                    f"{self.name} does not know which bot to talk to: the test started "
                    f"{len(bots)} bots; pass bot= to tgfleet_user (or start one with tgfleet_bot)"
                )
            self._bot = bots[0]
        return self._bot

    # -- acting ----------------------------------------------------------------------------

    def send(self, text: str) -> int:
        """Write ``text`` to the bot; returns the message's id (as the bot sees it)."""
        sent = self.simulator.send(self.id, self.bot.id, text)
        return int(sent[0]["id"])

    def send_photo(self, caption: str = "") -> int:
        """Send the bot a photo (a new one each time), with ``caption``; returns the
        message's id (as the bot sees it)."""
        sent = self.simulator.send(self.id, self.bot.id, caption, photo=True)
        return int(sent[0]["id"])

    def press(
        self, label: str, message: MessageRef | None = None, timeout: float | None = None
    ) -> Answer:
        """Press the button ``label`` on ``message`` (by default the newest message that
        has it, waiting for one) and return the bot's answer; fails if the bot does not
        answer in time."""
        __tracebackhide__ = True
        timeout = self.timeout if timeout is None else timeout
        target = self._message_with_button(label, message, timeout)
        try:
            raw = self.simulator.press(self.id, self.bot.id, target.id, text=label, timeout=timeout)
        except SimulatorApiError as exc:
            raise ExpectationFailed(
                f"{self.name} could not press {label!r} on {target.describe()}: {exc.message}"
            ) from None
        answer = Answer.from_simulator(raw)
        if not answer.answered:
            raise ExpectationFailed(
                f"{self.bot.mention} did not answer {self.name}'s press of {label!r} on "
                f"{target.describe()} within {timeout:g}s.\n{self.bot.diagnostics()}"
            )
        return answer

    def block(self) -> None:
        """Block the bot (its sends to this user fail; the bot gets a bot_stopped update)."""
        self.simulator.block(self.id, self.bot.id, True)

    def unblock(self) -> None:
        self.simulator.block(self.id, self.bot.id, False)

    # -- looking ---------------------------------------------------------------------------

    def replies(self) -> list[Received]:
        """Every message the bot sent this user, oldest first, as it is now (edits
        applied, deleted ones marked ``deleted``)."""
        raw = self.simulator.received(self.id, self.bot.id)
        return [Received.from_simulator(item) for item in raw]

    def last_message(self) -> Received:
        """The newest message the bot sent this user (fails when there is none)."""
        __tracebackhide__ = True
        replies = self.replies()
        if not replies:
            raise ExpectationFailed(f"{self.name} has no message from {self.bot.mention}")
        return replies[-1]

    # -- expecting -------------------------------------------------------------------------

    def expect_reply(
        self,
        text: str | None = None,
        *,
        contains: str | None = None,
        keyboard: Labels | None = None,
        timeout: float | None = None,
    ) -> Received:
        """Wait for a new message from the bot (one not returned by an earlier
        ``expect_reply``) with exactly ``text``, containing ``contains``, with buttons
        labelled ``keyboard`` (rows of labels; [] for none): whichever are given. Returns
        it; fails with what was expected and what arrived."""
        __tracebackhide__ = True
        timeout = self.timeout if timeout is None else timeout
        wanted = _wanted(text, contains, keyboard)
        start = self._cursor

        def arrived() -> tuple[int, Received] | None:
            self.bot.check_alive()
            for index, message in enumerate(self.replies()[start:], start):
                if _matches(message, text, contains, keyboard):
                    return index, message
            return None

        def failure() -> str:
            replies = self.replies()
            return (
                f"{self.name} expected a reply from {self.bot.mention} {wanted} within "
                f"{timeout:g}s.\nNew messages since the last expected reply:"
                f"{describe_all(replies[start:])}\nEarlier messages:"
                f"{describe_all(replies[:start])}\n{self.bot.diagnostics()}"
            )

        index, message = wait_for(arrived, timeout, failure)
        self._cursor = index + 1
        return message

    def expect_edit(
        self,
        message: MessageRef,
        text: str | None = None,
        *,
        contains: str | None = None,
        keyboard: Labels | None = None,
        timeout: float | None = None,
    ) -> Received:
        """Wait until the bot edited ``message`` so that it matches (as ``expect_reply``)."""
        __tracebackhide__ = True
        return self._expect_message(
            message,
            lambda m: m.edited and _matches(m, text, contains, keyboard),
            f"edited {_wanted(text, contains, keyboard)}",
            timeout,
        )

    def expect_deleted(self, message: MessageRef, timeout: float | None = None) -> Received:
        """Wait until the bot deleted ``message``."""
        __tracebackhide__ = True
        return self._expect_message(message, lambda m: m.deleted, "deleted", timeout)

    def _expect_message(
        self,
        message: MessageRef,
        condition: Callable[[Received], bool],
        wanted: str,
        timeout: float | None,
    ) -> Received:
        __tracebackhide__ = True
        timeout = self.timeout if timeout is None else timeout
        message_id = _id_of(message)

        def current() -> Received | None:
            return next((m for m in self.replies() if m.id == message_id), None)

        def done() -> Received | None:
            self.bot.check_alive()
            now = current()
            return now if now is not None and condition(now) else None

        def failure() -> str:
            now = current()
            seen = "it is not among them" if now is None else f"it is now {now.describe()}"
            return (
                f"{self.name} expected message #{message_id} from {self.bot.mention} to be "
                f"{wanted} within {timeout:g}s; {seen}.\n{self.bot.diagnostics()}"
            )

        return wait_for(done, timeout, failure)

    def _message_with_button(
        self, label: str, message: MessageRef | None, timeout: float
    ) -> Received:
        __tracebackhide__ = True
        wanted_id = None if message is None else _id_of(message)

        def found() -> Received | None:
            self.bot.check_alive()
            for candidate in reversed(self.replies()):
                if wanted_id is not None and candidate.id != wanted_id:
                    continue
                if not candidate.deleted and label in candidate.buttons:
                    return candidate
            return None

        where = "a message" if wanted_id is None else f"message #{wanted_id}"

        def failure() -> str:
            return (
                f"{self.name} wanted to press {label!r} but {where} from {self.bot.mention} "
                f"with that button did not arrive within {timeout:g}s. Messages:"
                f"{describe_all(self.replies())}\n{self.bot.diagnostics()}"
            )

        return wait_for(found, timeout, failure)


def _id_of(message: MessageRef) -> int:
    return message.id if isinstance(message, Received) else int(message)


def _matches(
    message: Received, text: str | None, contains: str | None, keyboard: Labels | None
) -> bool:
    if message.deleted:
        return False
    if text is not None and message.text != text:
        return False
    if contains is not None and contains not in message.text:
        return False
    return keyboard is None or message.keyboard == keyboard


def _wanted(text: str | None, contains: str | None, keyboard: Labels | None) -> str:
    parts = []
    if text is not None:
        parts.append(f"text {text!r}")
    if contains is not None:
        parts.append(f"text containing {contains!r}")
    if keyboard is not None:
        parts.append(f"keyboard {keyboard}" if keyboard else "no buttons")
    return "with " + " and ".join(parts) if parts else "(any)"
