"""The built-in app: a button-driven dating bot.

* **Registration** is a conversation (``registration``): name, age, gender, whom to
  meet, a photo and a bio, with Back, Cancel and Keep buttons; ages are checked.
* **Browsing** (``browsing``): profile cards with Like, Skip and Report; a verdict turns
  the same card into the next profile; two likes make a match, and both users get a
  button that opens the other's chat.
* **Your profile** (``menu``): see it, edit it, hide or show it, delete it; choose the
  language.
* **Moderation** (``moderation``): new, changed and reported profiles wait for the
  bot's admins, who approve or ban them from a queue.

It speaks English and Russian (``locales/``, gettext catalogs kept with Babel: ``make
i18n``), in the language the user chose, else Telegram's ``lang_code``. Profiles
migrated from the legacy JSON store work as they are; one that lacks what the app now
asks (a gender) is completed at the user's next /start.
"""

from __future__ import annotations

from tgfleet.bots import Router, Timing
from tgfleet.bots.apps.matchmaking import browsing, menu, moderation, registration
from tgfleet.bots.apps.matchmaking.common import I18N, LANGUAGES

router = Router("matchmaking")
router.middleware(Timing(warn_after_s=0.5))
router.middleware(I18N)
# The order is the order of matching: a conversation's steps before the menu's catch-all.
router.include_router(registration.router)
router.include_router(moderation.router)
router.include_router(browsing.router)
router.include_router(menu.router)

__all__ = ["I18N", "LANGUAGES", "router"]
