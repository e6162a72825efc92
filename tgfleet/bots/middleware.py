"""Built-in middlewares: small classes with one ``__call__(handler, ctx)``.

    router.middleware(Timing(warn_after_s=0.5))
    router.middleware(I18n(Path(__file__).parent / "locales"))
    admin.outer_middleware(AdminOnly(answer="Admins only."))
    router.outer_middleware(Throttle(rate=1.0, burst=3, notice="Slow down"))

A middleware calls ``handler(ctx)`` to go on, or returns without calling it to stop
(see ``tgfleet.bots.router`` for inner and outer middlewares). ``Throttle`` limits how
often one user may trigger the bot's handlers; its counts live in Redis, shared by every
worker process, so it has a module of its own (``tgfleet.bots.throttle``).
"""

from __future__ import annotations

import gettext
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tgfleet.bots.context import Context
from tgfleet.bots.router import Handler
from tgfleet.bots.throttle import Throttle

__all__ = ["AdminOnly", "I18n", "Throttle", "Timing"]

log = logging.getLogger(__name__)


class AdminOnly:
    """Lets only the bot's admins (``ctx.admin_chat_ids``) through. Others are dropped,
    or with ``answer`` told so (an alert for a button, a reply for a message)."""

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer

    def __call__(self, handler: Handler, ctx: Context) -> Any:
        if ctx.user_id in ctx.admin_chat_ids:
            return handler(ctx)
        log.info("bot %s: user %s is not an admin; update dropped", ctx.bot_id, ctx.user_id)
        if ctx.callback is not None:
            ctx.answer(self.answer, alert=self.answer is not None)
        elif self.answer is not None:
            ctx.reply(self.answer)
        return None


class Timing:
    """Logs how long the handler took (DEBUG), or warns when it took ``warn_after_s``
    or more."""

    def __init__(
        self, warn_after_s: float = 1.0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.warn_after_s = warn_after_s
        self.clock = clock

    def __call__(self, handler: Handler, ctx: Context) -> Any:
        started = self.clock()
        try:
            return handler(ctx)
        finally:
            took = self.clock() - started
            level = logging.WARNING if took >= self.warn_after_s else logging.DEBUG
            log.log(
                level,
                "bot %s: handler %s took %.1f ms",
                ctx.bot_id,
                ctx.handler_name,
                took * 1000,
            )


class I18n:
    """Sets ``ctx.lang`` and ``ctx.gettext`` (``ctx._``) from the user's language.

    The language is ``ctx.user_lang`` (the user's stored choice, else Telegram's
    lang_code; ``pt-br`` is looked up as ``pt_BR``, then ``pt``) when ``locale_dir``
    has a catalog for it (``<locale_dir>/<lang>/LC_MESSAGES/<domain>.mo``), else
    ``default``. Without a catalog a message id is its own translation.
    """

    def __init__(self, locale_dir: str | Path, domain: str = "messages", default: str = "en"):
        self.locale_dir = Path(locale_dir)
        self.domain = domain
        self.default = default
        self._catalogs: dict[str, gettext.NullTranslations] = {}

    def candidates(self, lang: str | None) -> list[str]:
        """The locale names to try for ``lang``, most specific first."""
        if not lang:
            return []
        language, _, region = lang.replace("-", "_").partition("_")
        names = [f"{language.lower()}_{region.upper()}"] if region else []
        return [*names, language.lower()]

    def language(self, lang: str | None) -> str:
        """The language to answer in: the first candidate with a catalog, else default."""
        for name in self.candidates(lang):
            if (self.locale_dir / name / "LC_MESSAGES" / f"{self.domain}.mo").is_file():
                return name
        return self.default

    def catalog(self, lang: str) -> gettext.NullTranslations:
        if lang not in self._catalogs:
            self._catalogs[lang] = gettext.translation(
                self.domain, str(self.locale_dir), languages=[lang], fallback=True
            )
        return self._catalogs[lang]

    def apply(self, ctx: Context) -> None:
        """Set ``ctx.lang`` and ``ctx.gettext`` from ``ctx.user_lang``."""
        ctx.lang = self.language(ctx.user_lang)
        ctx.gettext = self.catalog(ctx.lang).gettext

    def __call__(self, handler: Handler, ctx: Context) -> Any:
        self.apply(ctx)
        ctx.relocalize = self.apply
        return handler(ctx)
