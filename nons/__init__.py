"""NoN (Network of Networks): compound AI systems, OpenTelemetry-first.

    from nons import NoN, Node
    network = NoN.from_operators([Node("generate") * 5, "pack_candidates", "majority"])
    answer = await network.forward("What is the capital of France?")

Every name in ``__all__`` is the public API; each is importable from here, and loads its module on first use, so
``import nons`` stays cheap. ``tests/test_public_api.py`` pins the list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nons.base.version import __version__

__all__ = [
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

if TYPE_CHECKING:
    from nons.base.errors import (
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        CircuitOpenError,
        ConfigurationError,
        ContextLengthError,
        InputValidationError,
        LayerFailedError,
        MalformedResponseError,
        ModelNotFoundError,
        NetworkTimeoutError,
        NodeCancelledError,
        NodeExecutionError,
        NonError,
        OperatorError,
        OutputParseError,
        OverloadedError,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeoutError,
        QueueTimeoutError,
        RateLimitError,
        RefusalError,
        SchedulerStoppedError,
        ServerError,
        TimeoutExceededError,
    )
    from nons.base.results import LayerResult, LLMCallRecord, NetworkResult, NodeFailure, NodeResult, Usage
    from nons.base.types import (
        Budget,
        BudgetScope,
        CacheConfig,
        ErrorPolicy,
        LayerConfig,
        ModelConfig,
        ModelProvider,
        NetworkConfig,
        StructuredOutput,
    )
    from nons.core.agents import Agent, AgentRun, AgentStep, Tool, ToolRegistry, ToolResult
    from nons.core.budgets import configure_budgets, spending_for
    from nons.core.cache import configure_cache
    from nons.core.layer import Layer, create_layer
    from nons.core.network import NoN, create_network
    from nons.core.node import Node, create_node
    from nons.core.progress import ProgressEvent
    from nons.core.scheduler import (
        CircuitBreakerConfig,
        QueueStrategy,
        RateLimitConfig,
        RedisLimits,
        configure_scheduler,
        get_scheduler,
        health_check,
        start_scheduler,
        stop_scheduler,
    )
    from nons.observability import configure_telemetry, get_observability, shutdown_telemetry
    from nons.operators.context import OperatorContext
    from nons.operators.registry import list_operators, operator, register_operator

# Public name -> the module that defines it.
_ERRORS = (
    "AuthenticationError", "BadRequestError", "BudgetExceededError", "CircuitOpenError", "ConfigurationError",
    "ContextLengthError", "InputValidationError", "LayerFailedError", "MalformedResponseError", "ModelNotFoundError",
    "NetworkTimeoutError", "NodeCancelledError", "NodeExecutionError", "NonError", "OperatorError", "OutputParseError",
    "OverloadedError", "ProviderConnectionError", "ProviderError", "ProviderTimeoutError", "QueueTimeoutError",
    "RateLimitError", "RefusalError", "SchedulerStoppedError", "ServerError", "TimeoutExceededError",
)  # fmt: skip
_LAZY: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "nons.base.errors"),
    **dict.fromkeys(
        ("LLMCallRecord", "LayerResult", "NetworkResult", "NodeFailure", "NodeResult", "Usage"), "nons.base.results"
    ),
    **dict.fromkeys(
        ("Budget", "BudgetScope", "CacheConfig", "ErrorPolicy", "LayerConfig", "ModelConfig", "ModelProvider",
         "NetworkConfig", "StructuredOutput"),
        "nons.base.types",
    ),
    **dict.fromkeys(("Agent", "AgentRun", "AgentStep", "Tool", "ToolRegistry", "ToolResult"), "nons.core.agents"),
    "configure_budgets": "nons.core.budgets",
    "spending_for": "nons.core.budgets",
    "configure_cache": "nons.core.cache",
    "NoN": "nons.core.network",
    "create_network": "nons.core.network",
    "Node": "nons.core.node",
    "create_node": "nons.core.node",
    "Layer": "nons.core.layer",
    "create_layer": "nons.core.layer",
    "ProgressEvent": "nons.core.progress",
    **dict.fromkeys(
        (
            "CircuitBreakerConfig",
            "QueueStrategy",
            "RateLimitConfig",
            "RedisLimits",
            "configure_scheduler",
            "get_scheduler",
            "health_check",
            "start_scheduler",
            "stop_scheduler",
        ),
        "nons.core.scheduler",
    ),
    **dict.fromkeys(("configure_telemetry", "get_observability", "shutdown_telemetry"), "nons.observability"),
    "OperatorContext": "nons.operators.context",
    **dict.fromkeys(("list_operators", "operator", "register_operator"), "nons.operators.registry"),
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import nons` stays fast; the engine and OpenTelemetry load on first use.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nons' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
