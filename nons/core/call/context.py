"""What every LLM call of a pass shares (:class:`PassContext`), who makes a call (:class:`CallSite`), and the
state of one call in progress (:class:`CallState`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from nons.base.errors import ProviderError
from nons.base.messages import LLMRequest
from nons.base.results import LLMCallRecord
from nons.base.settings import Settings
from nons.base.types import LayerConfig, ModelConfig
from nons.core.progress import ProgressReporter
from nons.core.scheduler import Scheduler, get_scheduler
from nons.observability import names
from nons.observability.instruments import Instruments, get_instruments
from nons.observability.spans import SpanScope
from nons.providers.base import Provider

__all__ = ["CallSite", "CallState", "PassContext"]


@dataclass(slots=True)
class PassContext:
    """What every call of one forward pass shares."""

    network_name: str
    network_id: str
    instruments: Instruments
    scheduler: Scheduler
    settings: Settings
    capture_content: bool
    #: Every successful call of the pass, in completion order: the network's roll-up, failed layers included.
    calls: list[LLMCallRecord] = field(default_factory=list)
    #: Where the pass reports its progress (``on_progress``), if anyone listens.
    progress: ProgressReporter | None = None

    @classmethod
    def start(cls, name: str, pass_id: str, settings: Settings) -> PassContext:
        """The context of a new pass (a network's forward or an agent's run) under ``settings``."""
        return cls(
            network_name=name,
            network_id=pass_id,
            instruments=get_instruments(settings.enable_tracing, settings.enable_metrics),
            scheduler=get_scheduler(),
            settings=settings,
            capture_content=os.environ.get(names.ENV_CAPTURE_CONTENT, "").lower() in ("1", "true", "yes"),
        )


@dataclass(slots=True)
class CallSite:
    """Who is calling: the node's identity, model configs and the layer's policy."""

    node_id: str
    operator: str
    model_config: ModelConfig
    fallbacks: tuple[ModelConfig, ...]
    layer_config: LayerConfig
    priority: int = 0


@dataclass(slots=True)
class CallState:
    """One logical LLM call in progress: who makes it, its span, the model being tried, and the tallies over
    every attempt. One object per call (the hot path allocates nothing else of its own); a fallback points it
    at the next model."""

    ctx: PassContext
    site: CallSite
    scope: SpanScope
    #: The model the call asked for first (a fallback's record still names it as the request model).
    request_model: str
    #: The request to the model being tried; its ``provider``, ``model`` and ``config`` are that model's.
    request: LLMRequest
    provider: Provider
    #: Operation, provider and model labels of that model's metrics (``None`` when metrics are off).
    metric_attrs: dict[str, Any] | None
    started: float
    attempts: int = 0
    wait_s: float = 0.0
    last_error: ProviderError | None = None
    #: Whether the model being tried is a fallback.
    on_fallback: bool = False
