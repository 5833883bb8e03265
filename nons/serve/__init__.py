"""``nons serve``: networks of a spec file behind HTTP (FastAPI and uvicorn), with bearer tokens, per-caller
rate and spend limits, health and readiness, OpenTelemetry server spans and a graceful shutdown.

Needs the ``serve`` extra: ``pip install 'nons[serve]'``. The pieces:

- :mod:`nons.serve.app`: the ASGI app (``create_app``) and its routes; :mod:`nons.serve.runs`: one run for
  one request (cancelled when its client leaves, its spend charged however it ends);
- :mod:`nons.serve.auth`: callers and bearer tokens; :mod:`nons.serve.limits`: rate and spend limits, counted
  by :mod:`nons.serve.counts` (in the process, or in a store the replicas share);
- :mod:`nons.serve.refusals`, :mod:`nons.serve.bodylimit`: refused requests and their counter;
- :mod:`nons.serve.server`: uvicorn with the drain on SIGTERM; :mod:`nons.serve.service`: assembly;
- :mod:`nons.serve.settings`: the ``NON_SERVE_*`` settings; :mod:`nons.serve.cli`: the command.

Nothing is imported here, so that ``nons`` can build its parser without FastAPI installed.
"""
