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
from nons.base.types import Budget, CacheConfig, LayerConfig, ModelConfig
from nons.core.budgets import Budgets, LocalLedger, get_budgets
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
    #: The network's own budgets, and the process's (``None`` when no budget applies: nothing to reserve).
    budgets: tuple[Budget, ...] = ()
    budget_book: Budgets | None = None
    #: What this pass has reserved and spent, for its pass budgets.
    pass_ledger: LocalLedger = field(default_factory=LocalLedger)
    #: The network's cache setting (a node's own wins).
    cache: CacheConfig | None = None

    @classmethod
    def start(
        cls, name: str, pass_id: str, settings: Settings, budgets: tuple[Budget, ...] = (),
        cache: CacheConfig | None = None,
    ) -> PassContext:
        """The context of a new pass (a network's forward or an agent's run) under ``settings``."""
        book = get_budgets()
        return cls(
            network_name=name,
            network_id=pass_id,
            instruments=get_instruments(settings.enable_tracing, settings.enable_metrics),
            scheduler=get_scheduler(),
            settings=settings,
            capture_content=os.environ.get(names.ENV_CAPTURE_CONTENT, "").lower() in ("1", "true", "yes"),
            budgets=budgets,
            budget_book=book if budgets or book.budgets else None,
            cache=cache,
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
    #: Whether and how its answers are cached (``None``: not cached).
    cache: CacheConfig | None = None


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
