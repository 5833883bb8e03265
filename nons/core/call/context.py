"""What every LLM call of a pass shares (:class:`PassContext`), who makes a call (:class:`CallSite`), and the
state of one call in progress (:class:`CallState`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from nons.base import redaction
from nons.base.errors import NodeCancelledError, ProviderError, TimeoutExceededError
from nons.base.messages import LLMRequest
from nons.base.redaction import register_secret
from nons.base.results import LayerResult, LLMCallRecord, Usage
from nons.base.types import Budget, CacheConfig, LayerConfig, ModelConfig, ModelProvider
from nons.core.budget_ledger import LocalLedger
from nons.core.budgets import Budgets, get_budgets
from nons.core.call.labels import CallLabels, NodeLabels
from nons.core.pricing import start_price_updates
from nons.core.progress import ProgressReporter
from nons.core.scheduler import Scheduler, get_scheduler
from nons.observability.content import Capture, capture_mode
from nons.observability.instruments import Instruments, get_instruments
from nons.observability.spans import SpanScope
from nons.providers.base import Provider

if TYPE_CHECKING:  # the settings module loads pydantic-settings: imported by whoever builds a context
    from nons.base.settings import Settings

__all__ = [
    "CONVERSATION_ID_KEY",
    "LAYER_TIMED_OUT",
    "OUTER_TIMED_OUT",
    "RUNNING_NODE",
    "CallSite",
    "CallState",
    "Enclosing",
    "PassContext",
    "Spend",
    "cancellation_type",
    "cut_by_timeout",
    "running_node",
]

#: The message a layer cancels its nodes with when it times out (see :func:`cut_by_timeout`).
LAYER_TIMED_OUT = "nons: the node's layer timed out"
#: The message a layer cancels its nodes with when a timeout outside it cut it: an enclosing layer's or pass's.
OUTER_TIMED_OUT = "nons: an enclosing layer or pass timed out"


def cut_by_timeout(cancelled: BaseException, ctx: PassContext) -> bool:
    """Whether ``cancelled`` is the cancellation of a node whose layer, or pass (``ctx``'s), timed out. Their
    spans, and their calls' spans, then say ``timeout``, as their results do, rather than ``cancelled``; and the
    attempts they cut are timed as failed ones (a provider that hangs past a timeout shows on the dashboards)."""
    if cancelled.args and cancelled.args[0] in (LAYER_TIMED_OUT, OUTER_TIMED_OUT):
        return True
    # This pass's timeout, or that of a pass it runs inside (a network an operator runs, in a node whose pass
    # timed out).
    level: PassContext | None = ctx
    while level is not None:
        if level.timed_out():
            return True
        outer = level.enclosing.running() if level.enclosing is not None else None
        level = outer[0] if outer is not None else None
    return False


def cancellation_type(cancelled: BaseException, ctx: PassContext) -> str:
    """``error.type`` of a span or measurement that ``cancelled`` cut short: ``timeout`` when a layer's or
    pass's timeout did (:func:`cut_by_timeout`), else ``cancelled``."""
    return TimeoutExceededError.error_type if cut_by_timeout(cancelled, ctx) else NodeCancelledError.error_type


#: The OpenTelemetry context key that carries an agent run's ``gen_ai.conversation.id`` into whatever its tools
#: run: a network or a sub-agent started there belongs to the same conversation.
CONVERSATION_ID_KEY = otel_context.create_key("nons.conversation_id")


@dataclass(slots=True)
class Enclosing:
    """A node running an application's operator (or an agent's tool call), as a pass its code starts sees it:
    the pass the node belongs to and where the node records its calls, while it runs."""

    ctx: PassContext | None
    records: list[LLMCallRecord] | None

    def running(self) -> tuple[PassContext, list[LLMCallRecord]] | None:
        """The node's pass and records while it runs; ``None`` once it has ended."""
        if self.ctx is None or self.records is None:
            return None
        return self.ctx, self.records

    def end(self) -> None:
        """The node has ended. A task its code left behind may start a pass later, or go on with one (an agent
        run stepped after the node returned it): that pass is no part of the node's, which has returned, and the
        task does not keep the node's pass alive."""
        self.ctx = self.records = None


#: The node whose operator (an application's own, not a built-in one) or the agent tool call that is running in
#: this task: a pass its code starts (an agent's run, a network's forward) is part of it (``PassContext.enclosing``).
RUNNING_NODE: ContextVar[Enclosing | None] = ContextVar("nons.running_node", default=None)


@contextlib.contextmanager
def running_node(ctx: PassContext, records: list[LLMCallRecord]) -> Iterator[None]:
    """Run the application's code inside as the running node (:data:`RUNNING_NODE`) of pass ``ctx``, recording
    into ``records``; on the way out the node ends, for whatever its code left running."""
    node = Enclosing(ctx, records)
    token = RUNNING_NODE.set(node)
    try:
        yield
    finally:
        node.end()
        RUNNING_NODE.reset(token)


@dataclass(slots=True)
class PassContext:
    """What every call of one forward pass shares."""

    network_name: str
    network_id: str
    instruments: Instruments
    scheduler: Scheduler
    settings: Settings
    #: Where prompt, completion and tool content is recorded (nowhere unless asked).
    capture: Capture
    #: ``gen_ai.conversation.id`` of every span of the pass (an agent run's, or the one it runs under).
    conversation_id: str | None = None
    #: Every call of the pass that answered, or was billed for answers it could not use (its record's
    #: ``error_type`` set), in completion order: the network's roll-up, failed layers included.
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
    #: Whether anything records a call's outcome (spans, metrics or the inference event): when nothing does, the
    #: call path skips building what would be recorded.
    recording: bool = True
    #: The event loop the pass runs on (``None`` for a context made outside one). Passed to the scheduler, which
    #: would otherwise ask ``asyncio.get_running_loop()`` on every call: a ``getpid`` system call each time. A
    #: network pass runs in one loop; an agent run, which its caller may step from several, sets it at each step.
    #: Calls made with this context from another loop or thread are not supported.
    loop: asyncio.AbstractEventLoop | None = None
    #: The layer that raised, as far as it went (every node's result and calls): set by the layer, read by the
    #: pass for the error's ``partial_result``.
    failed_layer: LayerResult | None = None
    #: The pass, and the records of its node, that this pass was started in (:data:`RUNNING_NODE`), if any: an
    #: agent run or a network pass inside a node's operator or an agent's tool. Its calls are handed over to
    #: them (:meth:`hand_over`), so that the node's, the outer pass's and the outer agent's spend count them;
    #: and the outer pass's budgets apply to its calls (:func:`~nons.core.call.attempt.attempt`).
    enclosing: Enclosing | None = None
    #: How many of ``calls`` have been handed over.
    handed_over: int = 0
    #: The network's ``asyncio.timeout`` while its pass runs under one (Python 3.11 on): what it cancels can tell
    #: that a timeout did (:func:`cut_by_timeout`).
    pass_timeout: asyncio.Timeout | None = None

    def timed_out(self) -> bool:
        """Whether this pass ran past its network's timeout (``pass_timeout`` has expired)."""
        bound = self.pass_timeout
        return bound is not None and bound.expired()

    @classmethod
    def start(
        cls, name: str, pass_id: str, settings: Settings, conversation_id: str | None = None, *,
        budgets: tuple[Budget, ...] = (), cache: CacheConfig | None = None,
    ) -> PassContext:
        """The context of a new pass (a network's forward or an agent's run) under ``settings``.

        ``conversation_id`` defaults to the conversation of the agent run this pass is part of, if any.
        """
        if settings.prices_auto_update:
            start_price_updates(settings.prices_update_url)
        if conversation_id is None:
            inherited = otel_context.get_value(CONVERSATION_ID_KEY)
            conversation_id = inherited if isinstance(inherited, str) else None
        book = get_budgets()
        instruments = get_instruments(settings.enable_tracing, settings.enable_metrics)
        capture = capture_mode()
        enclosing = RUNNING_NODE.get()
        outer = enclosing.running() if enclosing is not None else None
        if outer is None:
            enclosing = None
        # A budget applies when this pass has one, the process has one, or a pass it runs inside has one.
        budgeted = bool(budgets or book.budgets) or (outer is not None and outer[0].budget_book is not None)
        return cls(
            network_name=name,
            network_id=pass_id,
            instruments=instruments,
            scheduler=get_scheduler(),
            settings=settings,
            capture=capture,
            conversation_id=conversation_id,
            budgets=budgets,
            budget_book=book if budgeted else None,
            cache=cache,
            recording=instruments.tracing or instruments.metrics or capture.event,
            loop=asyncio._get_running_loop(),
            enclosing=enclosing,
        )

    def hand_over(self) -> None:
        """Give the node and the pass this pass runs inside (:attr:`enclosing`) the calls made since the last
        hand-over: their records, roll-ups and totals count what was spent inside them. Nothing is handed to a
        node that has ended: its pass has returned its result."""
        outer = self.enclosing.running() if self.enclosing is not None else None
        if outer is None or self.handed_over == len(self.calls):
            return
        new = self.calls[self.handed_over :]
        self.handed_over = len(self.calls)
        outer[1].extend(new)
        outer[0].calls.extend(new)

    @property
    def capture_content(self) -> bool:
        """Whether content goes on span attributes (tool arguments and results, messages)."""
        return self.capture.span


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
    #: The span and metric labels of its calls with its own model config, once one has been made
    #: (:meth:`labels_for`; they may be stale, which :meth:`labels_for` checks before using them).
    labels: CallLabels | None = None
    #: The node's span and duration labels (:meth:`node_labels_now`), once its node has recorded either.
    node_labels: NodeLabels | None = None

    def __post_init__(self) -> None:
        # The keys of its configs are redacted from all its calls produce, from the first call on (labels, span
        # content, errors): an SDK provider registers the key it reads only when it sends a request, after the
        # span has started, and the simulated one reads none.
        for config in (self.model_config, *self.fallbacks, *self.model_config.fallbacks):
            if config.api_key is not None:
                register_secret(config.api_key.get_secret_value())

    def node_labels_now(self) -> NodeLabels:
        """The labels of this site's node: its own, or new ones when a secret registered since they were built
        could change what cleaning gives."""
        labels = self.node_labels
        if labels is None or labels.secrets != redaction.generation:
            labels = self.node_labels = NodeLabels.build(self.node_id, self.operator)
        return labels

    def labels_for(self, provider: Provider, request: LLMRequest, settings: Settings) -> CallLabels:
        """The labels of ``request``'s model (to ``provider``) at this site under ``settings``: its own when they
        still fit, else new ones, kept when the request is made with the site's own model config (a fallback's
        are not), as nearly every call is."""
        labels = self.labels
        if labels is not None and labels.fit(provider, request, settings):
            return labels
        labels = CallLabels.build(provider, request, self.operator, settings)
        if request.config is self.model_config:
            self.labels = labels
        return labels


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
    #: The span and metric labels of that model's calls from this site; ``None`` for a call that nothing records
    #: and no budget applies to (:func:`~nons.core.call.call.call_llm`'s quiet path), which never reads them.
    labels: CallLabels | None
    started: float
    attempts: int = 0
    wait_s: float = 0.0
    last_error: ProviderError | None = None
    #: Whether the model being tried is a fallback.
    on_fallback: bool = False
    #: What the provider billed for the answers of failed attempts (refused, or unusable), summed; ``None`` while
    #: none was: they belong to the call's record, span and budgets as its answer does.
    billed: Spend | None = None
    #: The part of it that the model being tried was billed (its ``nons.fallback`` event says it when the call
    #: moves on), and the last model billed and its provider (a record of a call with no usable answer names
    #: them: the provider tried last may not be the one that billed).
    model_billed: Spend | None = None
    billed_model: str | None = None
    billed_provider: ModelProvider | None = None
    #: The metric labels of the first model billed an answer of unknown price, when one was: the call is counted
    #: unpriced under that model, not under a priced fallback that answered after it.
    unpriced_labels: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Spend:
    """What one or more answers were billed: their usage and its price (``None`` once any part of it has no
    known price: unknown cost is never 0, and a sum with an unknown part is unknown), and the part of that price
    that is known (all of it when it is; what the known totals count when it is not)."""

    usage: Usage
    cost: float | None
    known: float

    @classmethod
    def of(cls, usage: Usage, cost: float | None) -> Spend:
        """One answer's spend."""
        return cls(usage, cost, 0.0 if cost is None else cost)

    def __add__(self, other: Spend) -> Spend:
        cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        return Spend(self.usage + other.usage, cost, self.known + other.known)

    @property
    def known_part(self) -> float:
        """The known part of an unknown cost, as a record keeps it (0 when the cost is known)."""
        return self.known if self.cost is None else 0.0
