"""The side-by-side benchmark of issue 15: ``python -m bench.compare [--rounds N | --quick]``.

Every contender runs in a fresh interpreter (:mod:`bench.compare.contenders`), in interleaved rounds, next to
the floors it is judged against; :mod:`bench.compare.sink` is the local OTLP/HTTP receiver that counts what the
telemetry contenders export; :mod:`bench.compare.floor` records NoN's signals for one pass and replays exactly
those through a hand-built OpenTelemetry SDK pipeline; :mod:`bench.compare.report` prints the table and the four
target ratios; :mod:`bench.compare.instructions` judges targets 1, 2 and 4 in instructions under callgrind, and
:mod:`bench.compare.opcodes` maps a node's work function by function, beside the engine floor's.
"""
