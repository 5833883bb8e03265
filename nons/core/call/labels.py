"""What a call's span and metrics are labelled with, for one model at one call site: built and cleaned once, then
shared by every call the site makes to that model.

A call's span starts with the same attributes on every pass (operation, provider, model, server, the config's
sampling parameters), and its metrics carry the same few label sets. Building those dicts and cleaning their
strings (:func:`nons.base.redaction.clean`) on every call was a good part of what NoN's telemetry added to the
SDK's own work (issue 15: "attribute sets built once per node, not per call"). A :class:`CallLabels` holds them
for one provider, model and config under one set of settings (a server's address may come from them);
:meth:`CallSite.labels_for <nons.core.call.context.CallSite.labels_for>` keeps one on the call site and builds it
again when any of those changes, or when a secret registered since (a provider registers the keys it reads) could
change what cleaning gives. The config's own key is registered before anything is cleaned, when the call site
is made (:class:`~nons.core.call.context.CallSite`).

A :class:`NodeLabels` does the same for the node that makes the calls: its span's name and attributes, and the
labels of its duration, kept on the call site (:meth:`CallSite.node_labels_now
<nons.core.call.context.CallSite.node_labels_now>`) until a secret is registered.

The dicts are shared: the SDK copies span attributes, and keeps a metric series' attributes as given, so none
of them is ever changed once built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nons.base import redaction
from nons.base.messages import LLMRequest
from nons.base.redaction import clean, clean_attributes
from nons.base.types import ModelConfig
from nons.observability import names
from nons.providers.base import Provider
from nons.providers.registry import sends_sampling

if TYPE_CHECKING:  # the settings module loads pydantic-settings
    from nons.base.settings import Settings

__all__ = ["CallLabels", "NodeLabels"]

#: Label sets kept per response model and per network: a model answers under one or two names and a site runs in
#: a network or two, but a server may send any name.
_KEPT = 8


@dataclass(slots=True, eq=False)
class CallLabels:
    """The span name, span attributes and metric labels of calls to one model from one call site, cleaned."""

    provider: Provider
    config: ModelConfig
    model: str
    settings: Settings
    #: :data:`nons.base.redaction.generation` when the strings were cleaned.
    secrets: int
    span_name: str
    #: What the call's span starts with, but for what a single call adds (a conversation, a typed answer).
    span_attributes: dict[str, Any]
    #: The part of :attr:`span_attributes` that follows what a call adds: its model's sampling parameters.
    span_tail: dict[str, Any]
    #: The client metrics' labels: operation, provider, request model, server.
    metric_attributes: dict[str, Any]
    #: NoN's own counters' labels: the client metrics' without the server.
    model_labels: dict[str, Any]
    #: The calling operator's name: with the provider, the model and the network's name (:meth:`cost`), the
    #: labels of ``nons.cost``.
    operator: str
    _by_response_model: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = field(
        default_factory=dict
    )
    _cost_by_network: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, provider: Provider, request: LLMRequest, operator: str, settings: Settings) -> CallLabels:
        """The labels of ``request``'s model (to ``provider``) for calls of ``operator`` under ``settings``."""
        config = request.config
        # The config's own key is registered already: a call site registers its configs' keys when it is made.
        secrets = redaction.generation  # read before cleaning: a secret registered meanwhile makes these stale
        operation, provider_name = provider.operation_name, provider.genai_provider_name
        model = clean(request.model)
        metric: dict[str, Any] = {
            names.GEN_AI_OPERATION_NAME: operation,
            names.GEN_AI_PROVIDER_NAME: provider_name,
            names.GEN_AI_REQUEST_MODEL: model,
        }
        endpoint = provider.server_endpoint(config)
        if endpoint is not None:
            metric[names.SERVER_ADDRESS], metric[names.SERVER_PORT] = clean(endpoint[0]), endpoint[1]
        # The parameters the request is sent with, not the config's: Anthropic is never sent a temperature or
        # top_p, and is sent a max_tokens when the config has none.
        tail: dict[str, Any] = {}
        sampling = sends_sampling(provider.provider)
        if config.temperature is not None and sampling:
            tail[names.GEN_AI_REQUEST_TEMPERATURE] = config.temperature
        max_tokens = config.max_tokens if config.max_tokens is not None else provider.default_max_tokens
        if max_tokens is not None:
            tail[names.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if config.top_p is not None and sampling:
            tail[names.GEN_AI_REQUEST_TOP_P] = config.top_p
        if config.stop:
            tail[names.GEN_AI_REQUEST_STOP_SEQUENCES] = tuple(clean(stop) for stop in config.stop)
        return cls(
            provider=provider,
            config=config,
            model=request.model,
            settings=settings,
            secrets=secrets,
            span_name=clean(names.llm_span_name(request.model, operation)),
            span_attributes={**metric, **tail},
            span_tail=tail,
            metric_attributes=metric,
            model_labels={
                names.GEN_AI_OPERATION_NAME: operation,
                names.GEN_AI_PROVIDER_NAME: provider_name,
                names.GEN_AI_REQUEST_MODEL: model,
            },
            operator=clean(operator),
        )

    def answered(self, response_model: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The labels of an answer from ``response_model``: its attempt's duration, its input tokens and its
        output tokens."""
        kept = self._by_response_model.get(response_model)
        if kept is not None:
            return kept
        duration = {**self.metric_attributes, names.GEN_AI_RESPONSE_MODEL: clean(response_model)}
        labels = (
            duration,
            {**duration, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_INPUT},
            {**duration, names.GEN_AI_TOKEN_TYPE: names.TOKEN_TYPE_OUTPUT},
        )
        if len(self._by_response_model) < _KEPT:
            self._by_response_model[response_model] = labels
        return labels

    def failed(self, error_type: str) -> dict[str, Any]:
        """The labels of an attempt that failed with ``error_type``."""
        return {**self.metric_attributes, names.ERROR_TYPE: clean(error_type)}

    def retried(self, error_type: str) -> dict[str, Any]:
        """The labels of a retry after ``error_type``."""
        return {**self.model_labels, names.ERROR_TYPE: clean(error_type)}

    def cost(self, network_name: str) -> dict[str, Any]:
        """``nons.cost``'s labels for a call of the network ``network_name``."""
        kept = self._cost_by_network.get(network_name)
        if kept is None:
            kept = {
                names.GEN_AI_PROVIDER_NAME: self.model_labels[names.GEN_AI_PROVIDER_NAME],
                names.GEN_AI_REQUEST_MODEL: self.model_labels[names.GEN_AI_REQUEST_MODEL],
                names.OPERATOR_NAME: self.operator,
                names.NETWORK_NAME: clean(network_name),
            }
            if len(self._cost_by_network) < _KEPT:
                self._cost_by_network[network_name] = kept
        return kept

    def fit(self, provider: Provider, request: LLMRequest, settings: Settings) -> bool:
        """Whether these are the labels of ``request`` (to ``provider``) under ``settings``, cleaned with every
        secret registered so far."""
        return (
            self.provider is provider
            and self.config is request.config
            and self.model == request.model
            and self.settings is settings
            and self.secrets == redaction.generation
        )

    def span_start(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        """The span's starting attributes, with ``extra`` (cleaned here) when a call adds any, in the order a
        span has always had them (a low attribute limit keeps the first ones)."""
        if not extra:
            return self.span_attributes
        return {**self.metric_attributes, **clean_attributes(extra), **self.span_tail}


@dataclass(slots=True, eq=False)
class NodeLabels:
    """The span name and attributes, and the duration's labels, of one call site's node, cleaned."""

    #: :data:`nons.base.redaction.generation` when the strings were cleaned.
    secrets: int
    span_name: str
    span_attributes: dict[str, Any]
    _durations: dict[tuple[str, bool], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, node_id: str, operator: str) -> NodeLabels:
        """The labels of the node ``node_id`` running ``operator``."""
        secrets = redaction.generation  # read before cleaning: a secret registered meanwhile makes these stale
        return cls(
            secrets=secrets,
            span_name=clean(names.node_span_name(operator)),
            span_attributes={names.NODE_ID: clean(node_id), names.OPERATOR_NAME: clean(operator)},
        )

    def duration(self, network_name: str, failed: bool) -> dict[str, Any]:
        """``nons.node.duration``'s labels for a run in the network ``network_name`` that failed or not."""
        key = (network_name, failed)
        kept = self._durations.get(key)
        if kept is None:
            kept = {
                names.OPERATOR_NAME: self.span_attributes[names.OPERATOR_NAME],
                names.NETWORK_NAME: clean(network_name),
                names.OUTCOME: names.OUTCOME_FAILURE if failed else names.OUTCOME_SUCCESS,
            }
            if len(self._durations) < 2 * _KEPT:
                self._durations[key] = kept
        return kept
