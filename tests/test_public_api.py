"""The public surface: what ``import nons`` offers, pinned so that a change to it is a decision, not an accident."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing

import nons
from nons.base.results import NetworkResult

PUBLIC_API = [
    "Agent",
    "AgentRun",
    "AgentStep",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "BudgetExceededError",
    "BudgetScope",
    "CacheConfig",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "ConfigurationError",
    "ContextLengthError",
    "ErrorPolicy",
    "InputValidationError",
    "LLMCallRecord",
    "Layer",
    "LayerConfig",
    "LayerFailedError",
    "LayerResult",
    "MalformedResponseError",
    "ModelConfig",
    "ModelNotFoundError",
    "ModelProvider",
    "NetworkConfig",
    "NetworkResult",
    "NetworkTimeoutError",
    "NoN",
    "Node",
    "NodeCancelledError",
    "NodeExecutionError",
    "NodeFailure",
    "NodeResult",
    "NonError",
    "OperatorContext",
    "OperatorError",
    "OutputParseError",
    "OverloadedError",
    "ProgressEvent",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "QueueStrategy",
    "QueueTimeoutError",
    "RateLimitConfig",
    "RateLimitError",
    "RedisLimits",
    "RefusalError",
    "SchedulerStoppedError",
    "ServerError",
    "StructuredOutput",
    "TimeoutExceededError",
    "Tool",
    "ToolRegistry",
    "ToolResult",
    "Usage",
    "__version__",
    "configure_budgets",
    "configure_cache",
    "configure_scheduler",
    "configure_telemetry",
    "create_layer",
    "create_network",
    "create_node",
    "get_observability",
    "get_scheduler",
    "health_check",
    "list_operators",
    "operator",
    "register_operator",
    "shutdown_telemetry",
    "spending_for",
    "start_scheduler",
    "stop_scheduler",
]


def test_all_is_pinned() -> None:
    assert nons.__all__ == PUBLIC_API


def test_every_public_name_resolves_to_the_object_its_home_module_defines() -> None:
    import importlib

    for name in PUBLIC_API:
        if name == "__version__":
            continue
        home = importlib.import_module(nons._LAZY[name])
        assert getattr(nons, name) is getattr(home, name), name


def test_every_error_of_the_hierarchy_is_public() -> None:
    from nons.base import errors

    assert set(errors.__all__) <= set(PUBLIC_API)


def test_contract_paths_name_the_same_objects() -> None:
    # design.md section 3 names these deep paths; they must stay and agree with the top level.
    from nons.core.agents import Agent, ToolRegistry
    from nons.core.network import NoN, create_network
    from nons.core.node import Node
    from nons.core.scheduler import RateLimitConfig, configure_scheduler
    from nons.core.types import ErrorPolicy, ModelConfig, ModelProvider, NetworkResult, RateLimitError
    from nons.observability.integration import get_observability

    for obj in (Agent, ToolRegistry, NoN, create_network, Node, RateLimitConfig, configure_scheduler, ErrorPolicy,
                ModelConfig, ModelProvider, NetworkResult, RateLimitError, get_observability):  # fmt: skip
        assert getattr(nons, obj.__name__) is obj


def test_unknown_names_raise_attribute_error() -> None:
    try:
        nons.NotAThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "NotAThing" in str(error)
    else:
        raise AssertionError("nons.NotAThing resolved")


def modules_loaded_by(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules whose names start with one of ``prefixes`` that a fresh interpreter loaded while running
    ``statement``. Fails if start-up (a ``.pth`` file, a ``sitecustomize``) had loaded any of them already: the
    check would then prove nothing."""
    code = (
        f"import sys\nbefore = set(sys.modules)\n{statement}\n"
        f"print([sorted(m for m in before if m.startswith({prefixes!r})),\n"
        f"       sorted(m for m in set(sys.modules) - before if m.startswith({prefixes!r}))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    at_start, loaded = ast.literal_eval(out.strip())
    # What start-up loaded would hide a regression: none of the modules checked may be among it.
    assert at_start == [], f"the interpreter loaded {at_start} before the statement ran"
    return loaded  # type: ignore[no-any-return]


def test_import_nons_loads_neither_the_engine_nor_opentelemetry() -> None:
    heavy = ("opentelemetry", "pydantic", "nons.core", "openai", "anthropic", "google")
    assert modules_loaded_by("import nons", heavy) == []


def test_importing_the_public_classes_defers_the_engine_and_opentelemetry_until_the_first_pass() -> None:
    # What a network is loads with `from nons import ...`; how a pass runs (the engine with asyncio, OpenTelemetry's
    # API, the scheduler and the providers) loads at the first pass, on a worker thread, as do pydantic-settings.
    # pydantic itself loads with the first config made (the configs are dataclasses it checks, nons.base.checked).
    # A program that only imports NoN pays for none of it.
    deferred: tuple[str, ...] = (
        "asyncio", "opentelemetry", "nons.core.engine", "nons.core.call", "nons.core.scheduler", "nons.providers",
        "nons.operators", "pydantic", "pydantic_settings", "dotenv", "nons.base.settings", "logging",
        # and redaction with the first error, json with the first dict made prompt text
        "nons.base.redaction", "json",
    )  # fmt: skip
    assert modules_loaded_by("from nons import NoN, Node, ModelConfig", deferred) == []
    built = (
        "from nons import NoN, Node, ModelConfig\n"
        "NoN.from_operators([Node('generate', ModelConfig()) * 2, 'majority'])"
    )
    assert modules_loaded_by(built, ("asyncio", "opentelemetry", "nons.core.engine", "nons.core.scheduler")) == []


def test_the_engine_defers_trace_propagation_and_the_sdk_until_used() -> None:
    # The W3C propagators load on the first pass given trace headers (their entry points take ~15 ms); the SDK
    # only when NoN sets telemetry up.
    deferred = ("opentelemetry.propagate", "opentelemetry.sdk")
    assert modules_loaded_by("import nons.core.engine.network", deferred) == []


def test_a_networks_run_and_forward_have_annotations_that_resolve() -> None:
    # What NoN.run needs at the first pass is loaded then; what its signature names is importable at any time.
    from nons.core.network import NoN

    for method in (NoN.run, NoN.forward, NoN.run_sync, NoN.forward_sync):
        assert typing.get_type_hints(method)["input_data"] is typing.Any
    assert typing.get_type_hints(NoN.run)["return"] is NetworkResult


def test_every_error_carries_the_failed_pass_as_a_network_result() -> None:
    # A failed pass's error says what the pass spent (NonError.partial_result); its annotation resolves.
    for error in (nons.NonError, nons.NodeExecutionError, nons.NetworkTimeoutError, nons.LayerFailedError):
        assert typing.get_type_hints(error)["partial_result"] == NetworkResult | None
    assert nons.NonError("raised outside a pass").partial_result is None
