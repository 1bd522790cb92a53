"""The ``wheelmill`` command. Each subcommand is a small function; settings are loaded once here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from wheelmill.config import Settings, load_settings, option_help
from wheelmill.errors import WheelmillError

console = Console(stderr=True, soft_wrap=True)  # never break a path in the middle
Command = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(args.config, **overrides)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.runner import run_up

    return run_up(settings, watch=args.watch, builders=args.builders)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.runner import run_serve

    return run_serve(settings)


def cmd_builder(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.runner import run_builder

    token = args.token or os.environ.get("WHEELMILL_TOKEN")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        raise WheelmillError("a builder needs its token: --token, --token-file or WHEELMILL_TOKEN")
    return run_builder(
        settings,
        master_url=args.master,
        token=token,
        workdir=args.workdir,
        max_jobs=args.max_jobs,
        root=args.root,
    )


def cmd_builder_root(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.builder.agent import root_target
    from wheelmill.rootfs.debootstrap import create_or_update

    done = create_or_update(args.dir, args.arch, args.suite, args.mirror, console)
    target = root_target(settings.sandbox, args.dir)
    console.print(f"build root {str(args.dir)!r} {done}: it builds {target}")
    console.print(f"use it with: wheelmill builder --root {args.dir} --master URL --token TOKEN")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.db.engine import Database
    from wheelmill.db.migrate import current_revision, upgrade

    db = Database(settings.resolved_database_url)
    if args.action == "upgrade":
        upgrade(db)
    console.print(f"database {db.url.render_as_string()} at revision {current_revision(db)}")
    return 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.db.engine import Database
    from wheelmill.db.migrate import upgrade
    from wheelmill.upstream import watch

    db = Database(settings.resolved_database_url)
    upgrade(db)
    if args.action == "add":
        for name in watch.add_watches(db, args.names):
            print(f"watching {name}")
    elif args.action == "remove":
        for name in watch.remove_watches(db, args.names):
            print(f"no longer watching {name}")
    else:
        for row in watch.list_watches(db):
            print(f"{row.name}\tserial {row.last_serial}\tchecked {row.checked_at or 'never'}")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.db import builders
    from wheelmill.db.engine import Database
    from wheelmill.db.migrate import upgrade

    db = Database(settings.resolved_database_url)
    upgrade(db)
    with db.write() as session:
        if args.action == "create":
            print(builders.create_token(session, args.builder))
        else:
            builders.revoke_token(session, args.builder)
            console.print(f"token of {args.builder!r} revoked")
    return 0


def cmd_builders(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from wheelmill.db import builders
    from wheelmill.db.engine import Database
    from wheelmill.db.tables import BuilderState

    db = Database(settings.resolved_database_url)
    if args.action == "list":
        table = Table("name", "state", "target", "phase", "last seen", "os")
        with db.read() as session:
            for b in builders.list_builders(session):
                table.add_row(
                    b.name, str(b.state), b.target or "", b.phase or "", str(b.last_seen or ""), b.os or ""
                )
        Console().print(table)
        return 0
    if not args.name:
        raise WheelmillError(f"'builders {args.action}' needs a builder NAME")
    state = {
        "pause": BuilderState.paused,
        "resume": BuilderState.active,
        "drain": BuilderState.draining,
        "kill": BuilderState.killed,
    }[args.action]
    with db.write() as session:
        builders.set_state(session, args.name, state)
    console.print(f"builder {args.name!r} is now {state}; it obeys at its next heartbeat or claim")
    return 0


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.runner import run_publish

    return run_publish(settings, everything=args.all, rewrite_logs=args.logs)


def cmd_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.bundle.client import run_bundle

    return run_bundle(
        master_url=args.master or settings.resolved_base_url,
        token=settings.admin_token,
        requirements=args.requirement,
        target=args.target,
        installed=args.installed,
        output=args.output,
        wait=args.wait,
        console=console,
    )


def cmd_client_config(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill import clientconfig

    if not settings.base_url:
        console.print(
            f"[yellow]warning:[/yellow] base_url is not set (WHEELMILL_BASE_URL): other machines "
            f"cannot reach {settings.resolved_base_url}",
            highlight=False,
        )
    if not args.write:
        print(clientconfig.render(settings, uv=args.uv), end="")
        return 0
    path = args.path or (clientconfig.UV_TOML if args.uv else clientconfig.PIP_CONF)
    changed = clientconfig.install(settings, uv=args.uv, path=path)
    console.print(f"{'wrote' if changed else 'already up to date:'} {path}", highlight=False)
    return 0


def cmd_admin(args: argparse.Namespace, settings: Settings) -> int:
    """add, remove, skip, unskip, rebuild, yank, unyank: one action on one NAME[==VERSION]."""
    from wheelmill.admin import actions
    from wheelmill.runner import open_master

    master = open_master(settings)
    run = {
        "add": lambda: actions.add(master, args.spec),
        "remove": lambda: actions.remove(master, args.spec, args.reason),
        "skip": lambda: actions.skip(master, args.spec, args.reason, args.target),
        "unskip": lambda: actions.unskip(master, args.spec, args.target),
        "rebuild": lambda: actions.rebuild(master, args.spec, args.target),
        "yank": lambda: actions.yank(master, args.spec, args.reason or ""),
        "unyank": lambda: actions.unyank(master, args.spec),
    }[args.command]
    for message in run().messages:
        print(message)
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.admin.importing import import_wheel
    from wheelmill.runner import open_master

    master = open_master(settings)
    log_text = args.log.read_text(errors="replace") if args.log else None
    for wheel in args.wheels:
        for message in import_wheel(master, wheel, log_text).messages:
            print(message)
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.admin.audit import audit
    from wheelmill.runner import open_master

    findings = audit(open_master(settings), fix=args.fix)
    sections = [
        ("missing", findings.missing),
        ("hash mismatch", findings.mismatched),
        ("extra" + (" (removed if older than 10 minutes)" if args.fix else ""), findings.extra),
        ("stale page" + (" (marked for rewrite)" if args.fix else ""), findings.stale_pages),
        ("extra page" + (" (marked for removal)" if args.fix else ""), findings.extra_pages),
    ]
    for title, entries in sections:
        for entry in entries:
            print(f"{title}: {entry}")
    for spec in sorted(findings.rebuild):
        print(f"to repair: wheelmill rebuild {spec}")
    if findings.clean:
        print("audit: database, files and pages agree")
    return 0 if findings.clean or args.fix else 1


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.status import render_status

    Console().print(render_status(settings))
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.monitor import run_monitor

    return run_monitor(settings, refresh=args.refresh)


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    from wheelmill.db.engine import Database
    from wheelmill.db.migrate import upgrade
    from wheelmill.downloads.command import run_ingest

    db = Database(settings.resolved_database_url)
    upgrade(db)
    return run_ingest(db, args.files, console)


def build_parser() -> argparse.ArgumentParser:
    options = "\n".join(f"  {env:32} {text} (default {default})" for env, default, text in option_help())
    parser = argparse.ArgumentParser(
        prog="wheelmill",
        description="A wheel build farm: follows an upstream index, builds wheels, serves them.",
        epilog=f"settings (TOML keys, lower case; or environment variables):\n{options}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or WHEELMILL_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run a whole farm here: master on SQLite, a local builder, the index")
    up.add_argument(
        "--watch", default=None, help="packages to follow, comma-separated (adds to the watch list)"
    )
    up.add_argument("--upstream", default=None, help="upstream simple index URL (default PyPI)")
    up.add_argument("--listen", default=None, help="HOST:PORT to serve on (default 127.0.0.1:8000)")
    up.add_argument("--builders", type=int, default=1, help="local builders to run (default 1)")
    up.set_defaults(func=cmd_up, overrides=("upstream", "listen"))

    serve = sub.add_parser("serve", help="run the master: builder API, index, pages, background loops")
    serve.add_argument("--listen", default=None, help="HOST:PORT to serve on")
    serve.set_defaults(func=cmd_serve, overrides=("listen",))

    builder = sub.add_parser("builder", help="run a builder that claims jobs from a master over HTTP")
    builder.add_argument("--master", required=True, help="the master's URL, e.g. http://farm:8000/")
    builder.add_argument("--token", help="this builder's token (or WHEELMILL_TOKEN)")
    builder.add_argument("--token-file", help="read the token from this file")
    builder.add_argument("--workdir", type=Path, default=None, help="scratch space for builds")
    builder.add_argument("--max-jobs", type=int, default=None, help="stop after this many builds")
    builder.add_argument(
        "--root", type=Path, default=None, help="build in this root (see builder-root) and claim its target"
    )
    builder.set_defaults(func=cmd_builder)

    builder_root = sub.add_parser(
        "builder-root", help="make or update a Debian root of another architecture (armhf) to build in"
    )
    builder_root.add_argument("action", choices=["create"], help="create the root, or update it if it exists")
    builder_root.add_argument("dir", type=Path, metavar="DIR", help="where the root lives")
    builder_root.add_argument("--arch", default="armhf", help="Debian architecture (default armhf)")
    builder_root.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    builder_root.add_argument(
        "--mirror", default="http://deb.debian.org/debian", help="Debian mirror (default deb.debian.org)"
    )
    builder_root.set_defaults(func=cmd_builder_root)

    db = sub.add_parser("db", help="database schema: upgrade to the newest migration, or show it")
    db.add_argument("action", choices=["upgrade", "current"])
    db.set_defaults(func=cmd_db)

    watch = sub.add_parser("watch", help="the watch list of packages followed in watch mode")
    watch.add_argument("action", choices=["add", "remove", "list"])
    watch.add_argument("names", nargs="*", help="package names")
    watch.set_defaults(func=cmd_watch)

    token = sub.add_parser("token", help="create or revoke a builder's token")
    token.add_argument("action", choices=["create", "revoke"])
    token.add_argument("--builder", required=True, help="the builder's name")
    token.set_defaults(func=cmd_token)

    fleet = sub.add_parser("builders", help="list builders; pause, resume, drain or kill one")
    fleet.add_argument("action", choices=["list", "pause", "resume", "drain", "kill"])
    fleet.add_argument("name", nargs="?", help="the builder's name")
    fleet.set_defaults(func=cmd_builders)

    publish = sub.add_parser("publish", help="rewrite the whole published site (index and pages)")
    publish.add_argument(
        "--all",
        action="store_true",
        help="every project, and the build log pages that are missing, with a progress bar "
        "(default: only the site-wide pages)",
    )
    publish.add_argument("--logs", action="store_true", help="with --all: rewrite every build log page too")
    publish.set_defaults(func=cmd_publish)

    bundle = sub.add_parser(
        "bundle",
        help="an offline bundle: every wheel requirements need on a target, minus what it has",
        description="Exit status: 0 when the bundle is complete, 1 when wheels are missing (each listed "
        "with why), 2 on bad input.",
    )
    bundle.add_argument(
        "-r", "--requirement", type=Path, required=True, metavar="FILE", help="a requirements.txt"
    )
    bundle.add_argument("--target", required=True, help="the target, e.g. cp311-cp311-linux_armv7l")
    bundle.add_argument(
        "--installed",
        type=Path,
        metavar="FILE",
        help="pip freeze or pip inspect output from the target: what it has is left out",
    )
    bundle.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="where to write it")
    bundle.add_argument("--wait", action="store_true", help="wait while the farm builds missing wheels")
    bundle.add_argument(
        "--master",
        metavar="URL",
        help="the master (default: base_url); WHEELMILL_ADMIN_TOKEN is sent if set",
    )
    bundle.set_defaults(func=cmd_bundle)

    client = sub.add_parser(
        "client-config", help="print or write the pip (or uv) settings that install from this farm"
    )
    client.add_argument("--uv", action="store_true", help="uv's uv.toml instead of pip's pip.conf")
    client.add_argument(
        "--write", action="store_true", help="write it (default /etc/pip.conf or /etc/uv/uv.toml)"
    )
    client.add_argument("--path", type=Path, help="with --write: the file to write instead")
    client.set_defaults(func=cmd_client_config)

    for action, text in (
        ("add", "follow a package; with ==VERSION, build that version first"),
        ("remove", "take a package or version off the farm: jobs cancelled, wheels and pages deleted"),
        ("skip", "stop building a package or version (on one target with --target)"),
        ("unskip", "build a skipped package or version again"),
        ("rebuild", "queue a version's jobs again, even if built (one target with --target)"),
        ("yank", "mark a version yanked (PEP 592): pip skips it unless pinned"),
        ("unyank", "undo yank"),
    ):
        admin = sub.add_parser(action, help=text)
        admin.add_argument("spec", metavar="NAME[==VERSION]")
        if action in ("skip", "unskip", "rebuild"):
            admin.add_argument("--target", help="only this target, e.g. cp311-cp311-linux_armv7l")
        if action in ("skip", "remove"):
            admin.add_argument("--reason", required=True, help="why; shown on the project page")
        if action == "yank":
            admin.add_argument("--reason", default="", help="shown by pip when the version is installed")
        admin.set_defaults(func=cmd_admin)

    importing = sub.add_parser("import", help="publish wheels built elsewhere, checked like uploads")
    importing.add_argument("wheels", nargs="+", type=Path, metavar="WHEEL")
    importing.add_argument("--log", type=Path, help="a build log to publish with them")
    importing.set_defaults(func=cmd_import)

    audit = sub.add_parser("audit", help="check database, files and pages against each other")
    audit.add_argument("--fix", action="store_true", help="delete unlisted files; rewrite or remove pages")
    audit.set_defaults(func=cmd_audit)

    status = sub.add_parser("status", help="the queue, builders, recent failures, follower and disk")
    status.set_defaults(func=cmd_status)

    monitor = sub.add_parser("monitor", help="a live dashboard; keys pause, resume, drain and kill builders")
    monitor.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes")
    monitor.set_defaults(func=cmd_monitor)

    logs = sub.add_parser(
        "logs",
        help="count wheel downloads in nginx or Apache access logs for the statistics",
        description="Reads combined-format logs, plain or gzip. Counts GETs of /files/NAME/FILE.whl answered "
        "200, per file and day and per client (pip and uv user agents). Lines counted once are never counted "
        "again, even in a grown, rotated or compressed copy of the log.",
    )
    logs.add_argument("action", choices=["ingest"])
    logs.add_argument("files", nargs="+", type=Path, metavar="FILE", help="access logs, plain or .gz")
    logs.set_defaults(func=cmd_logs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Rich output for a person at a terminal; plain lines (much cheaper per record) for a service.
    handler: logging.Handler = (
        RichHandler(console=console, show_path=False) if sys.stderr.isatty() else logging.StreamHandler()
    )
    if not sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        overrides = {key: getattr(args, key) for key in getattr(args, "overrides", ())}
        settings = _settings(args, **overrides)
        return args.func(args, settings)
    except WheelmillError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
