"""NoN (Network of Networks): compound AI systems, OpenTelemetry-first.

    from nons import NoN, Node
    network = NoN.from_operators([Node("generate") * 5, "pack_candidates", "majority"])
    answer = await network.forward("What is the capital of France?")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "ErrorPolicy",
    "LayerConfig",
    "ModelConfig",
    "ModelProvider",
    "NetworkConfig",
    "NoN",
    "Node",
    "__version__",
    "create_network",
    "operator",
]

if TYPE_CHECKING:
    from nons.core.network import NoN, create_network
    from nons.core.node import Node
    from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig
    from nons.operators.registry import operator

_LAZY = {
    "NoN": "nons.core.network",
    "create_network": "nons.core.network",
    "Node": "nons.core.node",
    "ErrorPolicy": "nons.core.types",
    "LayerConfig": "nons.core.types",
    "ModelConfig": "nons.core.types",
    "ModelProvider": "nons.core.types",
    "NetworkConfig": "nons.core.types",
    "operator": "nons.operators.registry",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import nons` stays fast; the engine and OpenTelemetry load on first use.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nons' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
