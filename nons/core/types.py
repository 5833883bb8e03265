"""The public configuration, result and error types, in one import (the contract's facade).

    from nons.core.types import ModelConfig, ModelProvider, ErrorPolicy, LayerConfig, NetworkResult, RateLimitError

The definitions live in :mod:`nons.base`: ``types`` (configs and enums), ``results`` and ``errors``.
"""

from __future__ import annotations

from nons.base.errors import *  # noqa: F403  (the error types are part of this module's public API)
from nons.base.errors import __all__ as _error_names
from nons.base.results import LayerResult, LLMCallRecord, NetworkResult, NodeFailure, NodeResult, Usage
from nons.base.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider, NetworkConfig, StructuredOutput

__all__ = [
    "ErrorPolicy",
    "LLMCallRecord",
    "LayerConfig",
    "LayerResult",
    "ModelConfig",
    "ModelProvider",
    "NetworkConfig",
    "NetworkResult",
    "NodeFailure",
    "NodeResult",
    "StructuredOutput",
    "Usage",
    *_error_names,
]
