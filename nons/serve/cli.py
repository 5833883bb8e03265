"""``nons serve FILE``: serve the networks of a spec file over HTTP.

Options override the ``NON_SERVE_*`` variables (:class:`~nons.serve.settings.ServeSettings`). Kept free of heavy
imports at module level: ``nons`` builds its parser from this module on every start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from nons.spec.cli import add_import_option, import_modules, missing_extra

__all__ = ["add_serve_command"]

logger = logging.getLogger("nons.serve")

_INSECURE_BANNER = """
================================================================================
 WARNING: nons serve is running WITHOUT AUTHENTICATION (--insecure-dev).
 Anyone who can reach http://{host}:{port} can run its networks and spend the
 providers' budget. Use it for local development only; in production give
 bearer tokens (NON_SERVE_TOKENS or --tokens-file).
================================================================================
"""

def _settings(args: argparse.Namespace) -> Any:
    from nons.serve.settings import OPTIONS, ServeSettings

    # Each option's value is kept under its setting's name (its ``dest``).
    overrides = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    return ServeSettings(**overrides)


def _serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from nons.serve.service import build_service
    except ImportError as error:
        print(missing_extra("serve", error), file=sys.stderr)
        return 2
    from pydantic import ValidationError

    from nons.core.types import ConfigurationError
    from nons.serve.settings import describe_settings_error
    from nons.spec import SpecError

    import_modules(args.imports)
    try:
        settings = _settings(args)
    except ValidationError as error:
        print(f"nons serve: {describe_settings_error(error)}", file=sys.stderr)
        return 2
    try:
        service = build_service(args.file, settings)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 1
    except (ConfigurationError, ValidationError) as error:
        print(f"nons serve: {error}", file=sys.stderr)
        return 2
    if service.tokens is None:
        print(_INSECURE_BANNER.format(host=settings.host, port=settings.port), file=sys.stderr)
        logger.warning("serving WITHOUT AUTHENTICATION (--insecure-dev): development only")
    service.run()
    return 0


def add_serve_command(commands: Any) -> None:
    """Add ``serve`` to the ``nons`` command's subparsers."""
    serve = commands.add_parser(
        "serve",
        help="serve the networks of a spec file over HTTP",
        description="Serve the networks of a spec file over HTTP (FastAPI + uvicorn). Needs bearer tokens "
        "(NON_SERVE_TOKENS or --tokens-file) unless --insecure-dev. Every option has a NON_SERVE_* variable.",
    )
    serve.add_argument("file", help="the spec file (YAML)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--tokens-file", help="file of bearer tokens, one 'caller:token' a line")
    serve.add_argument(
        "--insecure-dev", action="store_const", const=True, help="serve without authentication (development only)"
    )
    serve.add_argument("--rate-limit", help="requests per caller, e.g. '60/minute' (default), '5/second'")
    serve.add_argument("--spend-limit-usd-per-day", type=float, help="USD a caller may spend per UTC day")
    serve.add_argument("--limits-storage", help="limits storage URI (default memory://)")
    serve.add_argument(
        "--grace-period", dest="grace_period_s", type=float, help="seconds in-flight runs may take after SIGTERM (20)"
    )
    serve.add_argument(
        "--drain-delay",
        dest="drain_delay_s",
        type=float,
        help="seconds /readyz answers 503 before the listener closes (2)",
    )
    serve.add_argument(
        "--telemetry-flush", dest="telemetry_flush_s", type=float, help="seconds the last telemetry export may take (5)"
    )
    serve.add_argument("--access-log", action="store_const", const=True, help="log every request")
    add_import_option(serve)
    serve.set_defaults(func=_serve)
