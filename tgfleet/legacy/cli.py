"""``tgfleet legacy ...`` and ``tgfleet migrate-json ...``.

``add_parser(subparsers)`` registers both commands on the main parser; ``run(args)``
executes one and returns the exit code: 0 done, 1 verification failed / cutover refused,
2 the command could not run (bad store, settings, arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from tgfleet.legacy.format import COMPONENT_ORDER, Component
from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings

console = Console(stderr=False)


def add_parser(subparsers: Any) -> None:
    """Add ``legacy`` and ``migrate-json`` to the main parser's subcommands."""
    legacy = subparsers.add_parser("legacy", help="tools for legacy JSON stores")
    legacy_sub = legacy.add_subparsers(dest="legacy_action", required=True, metavar="ACTION")
    gen = legacy_sub.add_parser("generate", help="write a realistic legacy JSON store")
    gen.add_argument("dir", type=Path)
    gen.add_argument("--bots", type=int, default=2)
    gen.add_argument("--users", type=int, default=100, help="users per bot")
    gen.add_argument("--messages", type=int, default=10, help="average messages per user")
    gen.add_argument("--messy", action="store_true", help="add the mess real files have")
    gen.add_argument("--seed", type=int, default=1)

    mig = subparsers.add_parser("migrate-json", help="move a legacy JSON store to PostgreSQL")
    sub = mig.add_subparsers(dest="migrate_action", required=True, metavar="ACTION")
    plan = sub.add_parser("plan", help="counts, size, estimated time, problems in a sample")
    plan.add_argument("dir", type=Path)
    run_p = sub.add_parser("run", help="migrate in the foreground, with progress")
    run_p.add_argument("dir", type=Path, nargs="?", help="the store (default: the recorded one)")
    run_p.add_argument("--batch-size", type=int, default=50_000)  # engine.DEFAULT_BATCH_SIZE
    for name in ("status", "verify", "cutover", "rollback"):
        p = sub.add_parser(name, help=_HELP[name])
        p.add_argument("--dir", type=Path, help="the store (default: the recorded one)")
        if name == "status":
            p.add_argument("--json", action="store_true")
        if name == "verify":
            p.add_argument("--sample", type=int, default=50, help="records compared field by field")
        if name == "rollback":
            p.add_argument("--out", type=Path, help="write here instead of into the store")
        _component_arg(p, required=name in ("cutover", "rollback"))
    _component_arg(run_p, required=False)
    quarantine = sub.add_parser("quarantine", help="records that failed validation")
    quarantine.add_argument("quarantine_action", choices=["list", "export"])
    quarantine.add_argument("file", type=Path, nargs="?", help="export: JSON Lines file")
    quarantine.add_argument("--dir", type=Path)
    quarantine.add_argument("--limit", type=int, default=50, help="list: at most this many")
    _component_arg(quarantine, required=False)


_HELP = {
    "status": "state, progress and quarantine per bot and component",
    "verify": "compare counts, checksums and a sample on both sides",
    "cutover": "make PostgreSQL the source of truth (needs a passed verify)",
    "rollback": "export PostgreSQL's rows back to the legacy layout",
}


def _component_arg(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--component", choices=[c.value for c in Component], required=required)


def _components(args: argparse.Namespace) -> list[Component]:
    chosen = getattr(args, "component", None)
    return [Component(chosen)] if chosen else list(COMPONENT_ORDER)


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run the parsed ``legacy`` / ``migrate-json`` command (``args.command`` names which);
    returns the exit code. Settings are loaded from the environment when not given."""
    try:
        if args.command == "legacy":
            return _generate(args)
        if args.migrate_action == "plan":
            return _plan(args)
        if settings is None:
            from tgfleet.platform.settings import settings_or_exit

            settings = settings_or_exit()
        handler = {
            "run": _run,
            "status": _status,
            "verify": _verify,
            "cutover": _cutover,
            "rollback": _rollback,
            "quarantine": _quarantine,
        }[args.migrate_action]
        return handler(args, settings)
    except TgfleetError as exc:
        print(f"tgfleet: {exc}", file=sys.stderr)
        return 2


def _generate(args: argparse.Namespace) -> int:
    from tgfleet.legacy.generate import generate_store

    report = generate_store(
        args.dir,
        bots=args.bots,
        users=args.users,
        messages=args.messages,
        messy=args.messy,
        seed=args.seed,
    )
    table = Table(
        "component",
        "records",
        "invalid",
        "cut off by truncation",
        title=f"legacy store in {args.dir}",
    )
    for component, tally in report.tally.items():
        table.add_row(component.value, str(tally.records), str(tally.invalid), str(tally.lost))
    console.print(table)
    console.print(
        f"{len(report.bots)} bots, {report.bytes_written / 1e6:.1f} MB, "
        f"{len(report.truncated_files)} truncated files"
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    from tgfleet.legacy.plan import plan_store

    table = Table(
        "component",
        "files",
        "size",
        "≈records",
        "≈time",
        "sample problems",
        title=f"plan for {args.dir}",
    )
    plans = plan_store(args.dir)
    for p in plans:
        share = f"{p.sample_invalid}/{p.sampled} invalid" if p.sampled else "-"
        table.add_row(
            p.component.value,
            str(p.files),
            f"{p.bytes / 1e6:.1f} MB",
            f"{p.estimated_records:,}",
            f"{p.estimated_seconds:.0f} s",
            share,
        )
    console.print(table)
    for p in plans:
        for kind, count in p.problems.most_common(8):
            console.print(f"  {p.component.value}: {count} x {kind}")
        for line in p.suspect_files[:10]:
            console.print(f"  [yellow]{p.component.value}: {line}[/yellow]")
        if len(p.suspect_files) > 10:
            console.print(f"  … and {len(p.suspect_files) - 10} more suspect files")
    return 0


def _root(args: argparse.Namespace, settings: Settings) -> Path:
    from tgfleet.legacy.lifecycle import known_roots

    given = getattr(args, "dir", None)
    if given is not None:
        return Path(given).resolve()
    roots = known_roots(settings)
    if len(roots) == 1:
        return roots[0]
    if not roots:
        raise TgfleetError("no legacy store recorded yet: run `tgfleet migrate-json run DIR`")
    raise TgfleetError(
        "several stores are recorded (" + ", ".join(map(str, roots)) + "); pass --dir"
    )


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.legacy import lifecycle
    from tgfleet.legacy.plan import plan_component

    root = _root(args, settings)
    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:>10,.0f} rows"),
        _RowsPerSecond(),
        TimeRemainingColumn(),
    )
    failed = False
    with Progress(*columns, console=console) as progress:
        for component in _components(args):
            lifecycle.start(settings, root, component)
            estimate = plan_component(root, component, sample_files=5, sample_records=100)
            task = progress.add_task(component.value, total=max(1, estimate.estimated_records))

            def advance(result: Any, task: Any = task) -> None:
                progress.advance(task, result.read)

            total = lifecycle.run_until_idle(
                settings, root, component, batch_size=args.batch_size, on_batch=advance
            )
            progress.update(task, total=max(1, progress.tasks[task].completed))
            progress.console.print(
                f"{component.value}: {total.inserted:,} inserted, {total.updated:,} updated, "
                f"{total.deleted:,} deleted, {total.quarantined:,} quarantined"
                + (" (another batch holds the lock; try again)" if total.busy else "")
            )
            for error in total.errors[:10]:
                progress.console.print(f"  [yellow]{error}[/yellow]")
            failed = failed or total.busy
    return 1 if failed else 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.legacy.lifecycle import status

    root = _root(args, settings)
    rows = [item for component in _components(args) for item in status(settings, root, component)]
    if args.json:
        print(
            json.dumps(
                [
                    {**item.__dict__, "component": item.component.value, "state": item.state.value}
                    for item in rows
                ]
            )
        )
        return 0
    table = Table(
        "bot",
        "component",
        "state",
        "files loaded",
        "records read",
        "migrated",
        "quarantined",
        "verified",
        title=f"migration of {root}",
    )
    for item in rows:
        verified = {None: "-", True: "passed", False: "FAILED"}[item.verified]
        table.add_row(
            str(item.bot_id),
            item.component.value,
            item.state.value,
            f"{item.files_loaded}/{item.files}",
            f"{item.records_read:,}",
            f"{item.migrated:,}",
            f"{item.quarantined:,}",
            verified,
        )
    console.print(table)
    for item in rows:
        for error in item.errors[:5]:
            console.print(f"  [yellow]{error}[/yellow]")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.legacy.lifecycle import verify

    root = _root(args, settings)
    ok = True
    for component in _components(args):
        for report in verify(settings, root, component, sample=args.sample):
            word = "[green]passed[/green]" if report.passed else "[red]FAILED[/red]"
            console.print(
                f"bot {report.bot_id} {component.value}: {word} json "
                f"{report.json_count:,} rows ({report.json_checksum}), postgres "
                f"{report.pg_count:,} rows ({report.pg_checksum}), "
                f"{report.sampled} sampled, {report.differing} differ"
                + (f", {report.pending_files} files not loaded yet" if report.pending_files else "")
            )
            for line in report.mismatches:
                console.print(f"  {line}", markup=False)
            ok = ok and report.passed
    return 0 if ok else 1


def _cutover(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.legacy.lifecycle import CutoverRefused, cutover

    component = Component(args.component)
    try:
        bots = cutover(settings, _root(args, settings), component)
    except CutoverRefused as exc:
        print(f"tgfleet: {exc}", file=sys.stderr)
        return 1
    console.print(f"{component.value}: PostgreSQL is the source of truth for {len(bots)} bots")
    return 0


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.legacy.lifecycle import rollback

    component = Component(args.component)
    results = rollback(settings, _root(args, settings), component, out=args.out)
    for result in results:
        console.print(
            f"bot {result.bot_id} {component.value}: {result.rows:,} rows to "
            f"{len(result.files)} files; state is json again"
        )
    return 0


def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.legacy.lifecycle import quarantine_rows

    root = _root(args, settings)
    component = Component(args.component) if args.component else None
    if args.quarantine_action == "export":
        if args.file is None:
            raise TgfleetError("quarantine export needs a FILE to write (JSON Lines)")
        count = 0
        with args.file.open("w", encoding="utf-8") as fh:
            for row in quarantine_rows(settings, root, component):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        console.print(f"{count:,} quarantined records written to {args.file}")
        return 0
    table = Table("bot", "component", "file", "position", "reason")
    for row in quarantine_rows(settings, root, component, limit=args.limit):
        table.add_row(
            str(row["bot_id"]), row["component"], row["file"], str(row["position"]), row["reason"]
        )
    console.print(table)
    return 0
