"""A minimal app: answers every text with itself (handy for load tests and debugging)."""

from __future__ import annotations

from tgfleet.bots.context import Context
from tgfleet.bots.router import Router

router = Router("echo")


@router.text()
def echo(ctx: Context) -> None:
    ctx.reply(ctx.text)
    ctx.event("echo")


@router.fallback()
def other(ctx: Context) -> None:
    ctx.reply(ctx.text or "(no text)")
