"""The `portal` command line: demo, serve, seed, projections, search, calendar."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
from datetime import datetime, timedelta
from typing import Any

from portal.settings import Settings, SettingsError, load_settings
from projections.base import ProjectionFailed

log = logging.getLogger("portal")


def _fail(message: str, code: int = 2) -> int:
    print(f"portal: {message}", file=sys.stderr)
    return code


# The largest whole number SQLite and PostgreSQL store (BIGINT): a larger position or size can
# only be a typing error, and would fail deep inside the driver.
MAX_STORED_INT = 2**63 - 1


def whole_number(low: int, high: int = MAX_STORED_INT) -> Any:
    """An argparse type: a whole number from `low` to `high`, else a usage error naming both."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is invalid: must be at least {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{value} is too large: must be at most {high:,}")
        return value
    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse


port_number = whole_number(1, 65535)


def _progress(label: str, total: int | None = None) -> Any:
    def show(done: int, tot: int | None = total) -> None:
        if not sys.stderr.isatty():
            return
        if tot:
            width = 30
            filled = int(width * done / max(tot, 1))
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{tot}")
        else:
            sys.stderr.write(f"\r{label} {done}")
        sys.stderr.flush()
    return show


# -- seeding ------------------------------------------------------------------------------
def seed_demo(system: Any, dossiers: int, months: int = 18, seed: int = 2025) -> dict[str, Any]:
    from domain.calendar import VN_TZ
    from domain.demo import DemoData, Generator, seed_reference

    data = DemoData.load(system.settings.province_code)
    counts = seed_reference(system.app, data)
    now = datetime.now(VN_TZ)
    start = now - timedelta(days=30 * months)
    gen = Generator(system.app, data, seed=seed)
    stats = gen.run(dossiers, start, now, now=now, progress=_progress("hồ sơ", dossiers))
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return {**counts, **stats}


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def tune_gc() -> None:
    """For a web worker: what was built at start (routes, templates, reference data) moves out
    of the collector's way (`gc.freeze`), and young objects are collected less often. Fewer and
    shorter collections, so fewer requests wait behind one (the p99 of a page): a young
    generation of 5,000 objects takes a few milliseconds to collect (20,000 took 20-40 ms under
    the load test)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 40)
    # The event loop (kept pages, search) shares the GIL with the handler threads (rendering,
    # queries): a shorter switch interval lets it answer between their slices, not after 5 ms.
    sys.setswitchinterval(0.001)


def warm_up(app: Any) -> None:
    """For a web worker, before it listens: every template compiled. Started cold under full
    traffic (a deploy, a restart after a crash), a worker spent its first seconds compiling
    templates on first use with the GIL held (0.4-0.6 s for the 34 of them), and the requests
    queued behind made the load test's first seconds its slowest."""
    env = app.template_engine.engine
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)


def warm_transparency(system: Any) -> None:
    """For a web worker, in the background: the transparency log's leaf hashes and tree, which
    its first proof or checkpoint page would otherwise wait for (a province's feed: about 20 s
    of hashing, once per process)."""
    import threading

    from projections.transparency import log_of

    log = log_of(system)  # here: one log object for the process, not one per thread

    def run() -> None:
        try:
            log.leaves().tree.root()
        except Exception as e:  # no feed yet: the first request reads it
            logging.getLogger("portal.transparency").warning("warm-up skipped: %s", e)

    threading.Thread(target=run, name="transparency-warm-up", daemon=True).start()


# -- commands -----------------------------------------------------------------------------
def demo_address(settings: Settings, port: int) -> Settings:
    """The demo's public address (QR codes, posters, feeds) is where it serves, unless the
    operator set one: on another port than the default, QR codes led to :8000."""
    if settings.public_base_url != Settings.public_base_url:
        return settings
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return settings.with_(public_base_url=f"http://{host}:{port}")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from portal.app import create_app
    from portal.system import build_system, ensure_var_dir
    from search.server import ManagedMeili, MeiliUnavailable

    if args.fresh and settings.var_dir.exists():
        print(f"Xóa dữ liệu cũ trong {settings.var_dir} (--fresh)")
        shutil.rmtree(settings.var_dir)
    ensure_var_dir(settings)
    settings = demo_address(settings, args.port or settings.port)
    meili = None
    if not settings.meili_url:
        key_file = settings.var_dir / "meili.key"
        if not key_file.exists():
            import secrets

            key_file.write_text(secrets.token_urlsafe(24))
            key_file.chmod(0o600)
        meili = ManagedMeili(settings.var_dir / "meili", master_key=key_file.read_text().strip())
        try:
            meili.start()
        except MeiliUnavailable as e:
            print(f"Meilisearch không khởi động được ({e}); tìm kiếm sẽ dùng SQL.",
                  file=sys.stderr)
            meili = None
        else:
            settings = settings.with_(meili_url=meili.url, meili_key=meili.master_key)
            print(f"Meilisearch: {meili.url} (pid {meili.proc.pid if meili.proc else '?'})")
    system = build_system(settings)
    try:
        if system.runner.stale:  # tables built by an earlier version of their rules
            from projections.rebuild import rebuild_stale

            print(f"Dựng lại bản đọc theo quy tắc mới: {', '.join(sorted(system.runner.stale))}")
            rebuild_stale(system.app, system.db, system.runner)
        print("Nạp dữ liệu tỉnh mẫu (lặp lại không tạo trùng)...")
        stats = seed_demo(system, args.dossiers)
        print("Đã nạp:", json.dumps(stats, ensure_ascii=False))
        n = system.runner.catch_up()
        if system.sync is not None:
            try:
                system.sync.catch_up()
            except Exception as e:
                print(f"Đồng bộ tìm kiếm sẽ thử lại: {e}", file=sys.stderr)
        print(f"Bản đọc đã cập nhật ({n} sự kiện mới).")
        from portal.auth import seed_demo_accounts
        from projections.transparency import log_of

        log_of(system).publish_if_due()
        rows = seed_demo_accounts(system)
        print("Tài khoản cán bộ mẫu (mật khẩu chung):", rows[0][2])
        for u, role, _pw in rows[:6] + rows[-1:]:
            print(f"  {u:12} {role}")
        print(f"  ... {len(rows)} tài khoản; đăng nhập tại /staff/login")
        app = create_app(settings, system, background=True)
        from portal import stats_view

        stats_view.warm_up(system)
        print(f"Cổng minh bạch chạy tại http://{settings.host}:{args.port or settings.port}"
              " — nhấn Ctrl-C để dừng.")
        tune_gc()
        # uvicorn re-raises the signal that stopped it once it has shut down: SIGTERM (a service
        # manager, `kill`) then ended the process before the clean-up below, leaving the managed
        # Meilisearch running. Raised as SystemExit, it runs the clean-up as Ctrl-C does.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        uvicorn.run(app, host=settings.host, port=args.port or settings.port,
                    log_level="warning", access_log=False)
    finally:
        system.close()
        if meili is not None:
            meili.stop()
            print("Đã dừng Meilisearch.")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from portal import stats_view
    from portal.app import create_app

    app = create_app(settings, background=args.with_projections)
    warm_up(app)
    stats_view.warm_up(app.state["system"])
    warm_transparency(app.state["system"])
    tune_gc()
    # A long keep-alive: behind a proxy, a worker starved of CPU must not close a connection
    # just as the next request arrives on it (seen as dropped connections under load).
    uvicorn.run(app, host=args.host or settings.host, port=args.port or settings.port,
                log_level="info", access_log=False, timeout_keep_alive=65)
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from portal.system import build_system

    system = build_system(settings)
    try:
        stats = seed_demo(system, args.dossiers, seed=args.seed)
        print(json.dumps(stats, ensure_ascii=False))
    finally:
        system.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="portal", description="Cổng minh bạch một cửa")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="embedded default: SQLite, managed Meilisearch, demo data")
    d.add_argument("--fresh", action="store_true", help="delete var/ and start afresh")
    d.add_argument("--dossiers", type=whole_number(0, 1_000_000), default=250,
                   help="demo dossiers to generate (0-1,000,000)")
    d.add_argument("--port", type=port_number, default=None)
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("serve", help="web worker (stateless)")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=port_number, default=None, help="1-65535")
    s.add_argument("--with-projections", action="store_true",
                   help="also run projections in this process")
    s.set_defaults(func=cmd_serve)
    se = sub.add_parser("seed", help="load the demo province (idempotent)")
    se.add_argument("--dossiers", type=whole_number(0, 1_000_000), default=250)
    se.add_argument("--seed", type=int, default=2025)
    se.set_defaults(func=cmd_seed)
    for module in discover_commands():
        module.register(sub)
    return p


def discover_commands() -> list[Any]:
    """Modules of portal.commands, each with register(subparsers): one per operations area."""
    import importlib
    import pkgutil

    import portal.commands as pkg

    return [importlib.import_module(f"portal.commands.{m.name}")
            for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        _check_cipher_key(settings)
        return int(args.func(args, settings) or 0)
    except SettingsError as e:
        return _fail(str(e))
    except ProjectionFailed as e:  # a stopped read model: its reason, not a traceback
        return _fail(f"projection stopped: {e}")
    except KeyboardInterrupt:
        return 130
    # The safety net: a value or a file a command did not check is still reported as a message.
    except (ValueError, OverflowError) as e:
        return _fail(str(e) or type(e).__name__)
    except OSError as e:
        return _fail(_os_message(e), 1)
    except Exception as e:
        if _is_connection_error(e):
            return _fail(f"database error: {e}", 1)
        raise


def _check_cipher_key(settings: Settings) -> None:
    """Refuse a PORTAL_CIPHER_KEY the event store's cipher cannot use, before opening it."""
    if not settings.cipher_key:
        return
    import base64
    import binascii

    try:
        size = len(base64.b64decode(settings.cipher_key.encode("utf-8")))
    except (binascii.Error, ValueError):
        size = 0
    if size not in (16, 24, 32):
        raise SettingsError("PORTAL_CIPHER_KEY must be an AES key of 16, 24 or 32 bytes,"
                            " written in base64")


def _os_message(e: OSError) -> str:
    if e.strerror and e.filename:
        return f"{e.strerror}: {e.filename}"
    return str(e) or type(e).__name__


def _is_connection_error(e: Exception) -> bool:
    """The PostgreSQL driver's (or the event store's) failure to reach the database."""
    from eventsourcing.persistence import InterfaceError, OperationalError

    if isinstance(e, OperationalError | InterfaceError):
        return True
    try:
        import psycopg
    except ImportError:  # a SQLite-only install
        return False
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError)


if __name__ == "__main__":
    sys.exit(main())
