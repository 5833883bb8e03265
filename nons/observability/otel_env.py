"""The standard ``OTEL_*`` variables that telemetry setup and the SDK read, checked before anything is installed.

The SDK reads them at different moments and treats a malformed value in different ways: a bare ``ValueError``
naming no variable (``OTEL_EXPORTER_OTLP_TIMEOUT=abc``, ``OTEL_BSP_MAX_QUEUE_SIZE=0``), an ``OverflowError``
(a Prometheus port of ``99999``), a warning and its default (``OTEL_METRIC_EXPORT_INTERVAL=abc``), or silently
another choice (an unknown ``OTEL_EXPORTER_OTLP_PROTOCOL`` selected HTTP/protobuf). :func:`check_otel_environment`
reads every one of them first and raises one :class:`~nons.base.errors.ConfigurationError` that names each bad
variable, its value and what is accepted, as the SDK's own configurator does for the protocol. Since nothing is
installed before the check, a refused setup leaves nothing behind and can be retried.

Only what NoN builds is NoN's to check: the variables of a signal whose provider NoN installs (its sampler, batch
processor and limits), and the ``OTEL_EXPORTER_OTLP_*`` values its own OTLP exporters read. An application with
its own providers reads the rest, or not, itself: its ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json`` or
``OTEL_TRACES_SAMPLER=xray`` may be fine for the exporter or sampler it installed.

Header lists are checked for their shape only, and never quoted: they carry the collector's credentials.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from nons.base.errors import ConfigurationError

__all__ = ["OTLP_EXPORTER_NAMES", "check_otel_environment", "otlp_protocol"]

_SIGNALS = ("TRACES", "METRICS", "LOGS")

#: For each signal ("TRACES", "METRICS", "LOGS") whose provider NoN builds, the exporters it builds for it (the
#: names of :func:`~nons.observability.exporters.exporter_names`: ``otlp``, ``console``, ``prometheus``).
Exports = Mapping[str, Collection[str]]

#: The settings each OTLP exporter reads from its signal's variable (``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT``), else
#: from the general one (``OTEL_EXPORTER_OTLP_TIMEOUT``).
_OTLP_SETTINGS = ("PROTOCOL", "TIMEOUT", "COMPRESSION", "ENDPOINT", "HEADERS", "CERTIFICATE", "CLIENT_KEY",
                  "CLIENT_CERTIFICATE")  # fmt: skip

#: The variables (by prefix) a signal's SDK provider and its batch processor read, apart from the OTLP
#: exporter's: NoN's to check only when it builds that provider.
_PROVIDER_PREFIXES = {
    "TRACES": ("OTEL_TRACES_SAMPLER", "OTEL_BSP_", "OTEL_SPAN_", "OTEL_EVENT_", "OTEL_LINK_", "OTEL_ATTRIBUTE_"),
    "METRICS": ("OTEL_METRIC_", "OTEL_METRICS_"),
    "LOGS": ("OTEL_BLRP_", "OTEL_LOGRECORD_", "OTEL_ATTRIBUTE_"),
}

#: The names an exporter variable (``OTEL_TRACES_EXPORTER``...) may give the OTLP exporter, and the protocol each
#: fixes: ``otlp`` leaves it to the protocol variables; ``otlp_proto_grpc`` and ``otlp_proto_http`` are the OTLP
#: exporter packages' entry point names, which the SDK's own configurator (``opentelemetry-instrument``) accepts,
#: and which name their protocol whatever the protocol variables say, as they do there.
OTLP_EXPORTER_NAMES: dict[str, str | None] = {
    "otlp": None,
    "otlp_proto_grpc": "grpc",
    "otlp_proto_http": "http/protobuf",
}

#: What each OTLP protocol variable accepts (the Python exporters have no ``http/json``).
PROTOCOLS = ("grpc", "http/protobuf")
_COMPRESSIONS = ("gzip", "deflate", "none")
_TEMPORALITIES = ("cumulative", "delta", "lowmemory")
_HISTOGRAMS = ("explicit_bucket_histogram", "base2_exponential_bucket_histogram")
_EXEMPLAR_FILTERS = ("always_on", "always_off", "trace_based")
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)

Check = Callable[[str], str | None]  # the value's problem, or None


def _integer(low: int, high: int | None = None) -> Check:
    def check(value: str) -> str | None:
        try:
            number = int(value.strip())
        except ValueError:
            return "is not a whole number"
        if number < low or (high is not None and number > high):
            return f"must be from {low} to {high}" if high is not None else f"must be {low} or more"
        return None

    return check


def _seconds(value: str) -> str | None:
    try:
        number = float(value.strip())
    except ValueError:
        return "is not a number"
    if not math.isfinite(number) or number < 0:
        return "must be a finite number of 0 or more"
    return None


def _ratio(value: str) -> str | None:
    try:
        number = float(value.strip())
    except ValueError:
        return "is not a number"
    return None if 0.0 <= number <= 1.0 else "must be a ratio from 0 to 1"


def _one_of(choices: Iterable[str], *, case: bool = False) -> Check:
    accepted = tuple(choices)

    def check(value: str) -> str | None:
        given = value.strip() if case else value.strip().lower()
        return None if given in accepted else f"is not one of {', '.join(accepted)}"

    return check


def _sampler(value: str) -> str | None:
    # Samplers may also come from installed packages, through the SDK's entry point group.
    # The SDK registers its own samplers there too: each name is listed once.
    custom = {ep.name for ep in entry_points(group="opentelemetry_traces_sampler")} - set(_SAMPLERS)
    return _one_of((*_SAMPLERS, *sorted(custom)))(value)


def _endpoint(protocol_variables: tuple[str, ...]) -> Check:
    def check(value: str) -> str | None:
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.hostname:
            return None
        # The gRPC exporter also takes a bare host:port.
        grpc = any(otlp_protocol(variable)[0] == "grpc" for variable in protocol_variables)
        host, _, port = value.strip().rpartition(":")
        if grpc and host and port.isdigit() and "/" not in host:
            return None
        return "is not a URL such as http://collector:4317"

    return check


def otlp_protocol(signal_variable: str) -> tuple[str, str | None]:
    """The OTLP protocol a signal's exporter uses, lower-cased, and the variable that set it: the one its exporter
    variable's name fixes (``OTEL_TRACES_EXPORTER=otlp_proto_http``), else the signal's own protocol variable
    (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``...) over ``OTEL_EXPORTER_OTLP_PROTOCOL``, an empty value counting as
    unset; ``("grpc", None)`` when none is set, NoN's default as the Python SDK's."""
    signal = signal_variable.removeprefix("OTEL_EXPORTER_OTLP_").removesuffix("_PROTOCOL")
    exporter_variable = f"OTEL_{signal}_EXPORTER"
    for name in os.environ.get(exporter_variable, "").split(","):
        fixed = OTLP_EXPORTER_NAMES.get(name.strip().lower())
        if fixed is not None:
            return fixed, exporter_variable
    for variable in (signal_variable, "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(variable, "").strip().lower()
        if value:
            return value, variable
    return "grpc", None


def _key_values(value: str) -> str | None:
    for index, entry in enumerate(value.split(","), 1):
        name, equals, _ = entry.partition("=")
        if entry.strip() and (not equals or not name.strip()):
            return f"entry {index} is not name=value"
    return None


def _file(value: str) -> str | None:
    return None if os.path.isfile(value) else "is not a file that can be read"


def _rules() -> dict[str, Check]:
    rules: dict[str, Check] = {
        "OTEL_EXPORTER_PROMETHEUS_PORT": _integer(0, 65535),
        "OTEL_METRIC_EXPORT_INTERVAL": _integer(1),
        "OTEL_METRIC_EXPORT_TIMEOUT": _integer(0),
        "OTEL_METRICS_EXEMPLAR_FILTER": _one_of(_EXEMPLAR_FILTERS),
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": _one_of(_TEMPORALITIES),
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": _one_of(_HISTOGRAMS),
        "OTEL_TRACES_SAMPLER": _sampler,
        "OTEL_RESOURCE_ATTRIBUTES": _key_values,
    }
    for processor in ("BSP", "BLRP"):
        # 0 too is refused: the SDK's batch processors (and fastotel's) raise a bare ValueError for it.
        rules[f"OTEL_{processor}_SCHEDULE_DELAY"] = _integer(1)
        rules[f"OTEL_{processor}_EXPORT_TIMEOUT"] = _integer(0)
        rules[f"OTEL_{processor}_MAX_QUEUE_SIZE"] = _integer(1)
        rules[f"OTEL_{processor}_MAX_EXPORT_BATCH_SIZE"] = _integer(1)
    for limit in (
        "ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "ATTRIBUTE_COUNT_LIMIT",
        "SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "SPAN_ATTRIBUTE_COUNT_LIMIT",
        "SPAN_EVENT_COUNT_LIMIT",
        "SPAN_LINK_COUNT_LIMIT",
        "EVENT_ATTRIBUTE_COUNT_LIMIT",
        "LINK_ATTRIBUTE_COUNT_LIMIT",
        "LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
        "LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    ):
        rules[f"OTEL_{limit}"] = _integer(0)
    for prefix in ("OTEL_EXPORTER_OTLP_", *(f"OTEL_EXPORTER_OTLP_{s}_" for s in _SIGNALS)):
        signal = prefix.removeprefix("OTEL_EXPORTER_OTLP_")
        protocols = (f"{prefix}PROTOCOL",) if signal else tuple(f"OTEL_EXPORTER_OTLP_{s}_PROTOCOL" for s in _SIGNALS)
        rules[f"{prefix}PROTOCOL"] = _one_of(PROTOCOLS)
        rules[f"{prefix}TIMEOUT"] = _seconds
        rules[f"{prefix}COMPRESSION"] = _one_of(_COMPRESSIONS)
        rules[f"{prefix}ENDPOINT"] = _endpoint(protocols)
        rules[f"{prefix}HEADERS"] = _key_values
        for credential in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
            rules[f"{prefix}{credential}"] = _file
    return rules


#: Variables whose value is never quoted in an error (credentials).
_UNQUOTED = ("_HEADERS",)


def check_otel_environment(exports: Exports | None = None) -> None:
    """Raise :class:`ConfigurationError` naming every malformed ``OTEL_*`` value the setup or the SDK would read
    for what NoN builds, with the value (a header list's excepted) and what is accepted. An empty variable counts
    as unset.

    ``exports`` says what NoN builds: the signals whose provider it installs, each with the exporters it builds
    for it (``{"METRICS": ["otlp"]}``); ``None`` (the default) checks every variable of every signal.
    """
    applies = _applies_to(exports)
    problems: list[str] = []
    for variable, check in _rules().items():
        value = os.environ.get(variable)
        if not value or not applies(variable):
            continue
        problem = check(value)
        if problem is not None:
            shown = variable if variable.endswith(_UNQUOTED) else f"{variable}={value!r}"
            problems.append(f"{shown} {problem}")
    problems += _cross_checks(applies)
    if applies("OTEL_TRACES_SAMPLER_ARG"):
        problems += _sampler_argument()
    if problems:
        raise ConfigurationError("invalid OpenTelemetry settings: " + "; ".join(problems))


def _applies_to(exports: Exports | None) -> Callable[[str], bool]:
    """Whether a variable is read by what ``exports`` says NoN builds (every variable, when it is ``None``)."""
    if exports is None:
        return lambda variable: True
    otlp_variables = _otlp_variables_read(exports)

    def applies(variable: str) -> bool:
        if variable.startswith("OTEL_EXPORTER_OTLP_"):
            return variable in otlp_variables
        if variable.startswith("OTEL_EXPORTER_PROMETHEUS_"):  # read by the Prometheus exporter alone
            return "prometheus" in exports.get("METRICS", ())
        owners = [signal for signal, prefixes in _PROVIDER_PREFIXES.items() if variable.startswith(prefixes)]
        # A variable of no one signal (OTEL_RESOURCE_ATTRIBUTES) is read by every provider NoN builds.
        return any(signal in exports for signal in owners) if owners else bool(exports)

    return applies


def _otlp_variables_read(exports: Exports) -> set[str]:
    """The ``OTEL_EXPORTER_OTLP_*`` variables NoN's own OTLP exporters read: for each signal NoN exports over
    OTLP, the signal's variable of each setting, or the general one when the signal's is unset (empty counts as
    unset), as the exporters read them; and the signal's metrics-only settings. A protocol that the exporter
    variable's name fixes (``otlp_proto_grpc``) is read from no protocol variable."""
    read: set[str] = set()
    checked = _rules()
    for signal, exporters in exports.items():
        if "otlp" not in exporters:
            continue
        prefix = f"OTEL_EXPORTER_OTLP_{signal}_"
        read.update(v for v in checked if v.startswith(prefix) and v.removeprefix(prefix) not in _OTLP_SETTINGS)
        for setting in _OTLP_SETTINGS:
            own = f"{prefix}{setting}"
            if setting == "PROTOCOL" and otlp_protocol(own)[1] == f"OTEL_{signal}_EXPORTER":
                continue
            read.add(own if os.environ.get(own) else f"OTEL_EXPORTER_OTLP_{setting}")
    return read


def _sampler_argument() -> list[str]:
    """``OTEL_TRACES_SAMPLER_ARG``'s problem when it is meant as a ratio (a ratio sampler's, or no sampler
    named)."""
    sampler = (os.environ.get("OTEL_TRACES_SAMPLER") or "").strip().lower()
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
    if argument and (sampler.endswith("traceidratio") or not sampler):
        problem = _ratio(argument)
        if problem is not None:
            return [f"OTEL_TRACES_SAMPLER_ARG={argument!r} {problem}"]
    return []


def _cross_checks(applies: Callable[[str], bool]) -> list[str]:
    """Values that are each fine but do not go together (of the processors NoN builds)."""
    problems = []
    for processor in ("BSP", "BLRP"):
        if not applies(f"OTEL_{processor}_MAX_QUEUE_SIZE"):
            continue
        queue = os.environ.get(f"OTEL_{processor}_MAX_QUEUE_SIZE", "")
        batch = os.environ.get(f"OTEL_{processor}_MAX_EXPORT_BATCH_SIZE", "")
        if queue.strip().isdigit() and batch.strip().isdigit() and int(batch) > int(queue):
            problems.append(
                f"OTEL_{processor}_MAX_EXPORT_BATCH_SIZE={batch!r} must not exceed "
                f"OTEL_{processor}_MAX_QUEUE_SIZE={queue!r}"
            )
    return problems
