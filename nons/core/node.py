"""A node: one operator plus its configuration (model, prompt context, parameters, fallbacks).

What a node is, not how it runs (:mod:`nons.core.engine.node`): ``from nons import Node`` loads neither the
engine nor OpenTelemetry, and the operators load when the first node is made.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from nons.base.errors import ConfigurationError
from nons.base.types import CacheConfig, ModelConfig

if TYPE_CHECKING:
    from nons.operators.registry import OperatorSpec

__all__ = ["Node", "create_node"]

_ids = itertools.count(1)


class Node:
    """An operator with its configuration; the unit that runs in a layer.

    Args:
        operator_name: a registered operator (built-in or ``@operator``).
        model_config: the model its LLM calls use (default: the default provider's default model).
        additional_prompt_context: text added to the system prompt of every call the node makes.
        fallbacks: model configs tried in order under ``ErrorPolicy.FALLBACK_MODEL`` (default: those of
            ``model_config``).
        priority: the node's priority in the scheduler's PRIORITY queue (higher first).
        cache: cache this node's LLM answers (``True`` or a :class:`CacheConfig`; ``False`` never, even when
            the network caches; default: as the network says). See :mod:`nons.core.cache`.
        **parameters: the operator's own parameters, e.g. ``Node("classify", categories=[...])``.

    ``node * 5`` (or ``5 * node``) gives five independent clones, each with its own id.
    """

    __slots__ = (
        "_call_site", "additional_prompt_context", "cache", "fallbacks", "id", "model_config", "parameters",
        "priority", "spec",
    )

    def __init__(
        self,
        operator_name: str,
        model_config: ModelConfig | None = None,
        additional_prompt_context: str = "",
        *,
        fallbacks: Sequence[ModelConfig] = (),
        priority: int = 0,
        cache: CacheConfig | bool | None = None,
        **parameters: Any,
    ) -> None:
        if not isinstance(operator_name, str):
            raise ConfigurationError(f"operator_name must be a string, got {type(operator_name).__name__}")
        if model_config is not None and not isinstance(model_config, ModelConfig):
            raise ConfigurationError(f"model_config must be a ModelConfig, got {type(model_config).__name__}")
        if not isinstance(additional_prompt_context, str):
            raise ConfigurationError("additional_prompt_context must be a string")
        from nons.operators.registry import get_operator

        self.spec: OperatorSpec = get_operator(operator_name)
        parameters = self.spec.check_params(parameters)
        self.model_config = model_config or ModelConfig()
        self.additional_prompt_context = additional_prompt_context
        self.fallbacks = _fallback_configs(fallbacks)
        if isinstance(priority, bool) or not isinstance(priority, int):
            # Under the PRIORITY queue a priority is compared when a call waits: anything but an int failed there,
            # as a bare TypeError, and only then.
            raise ConfigurationError(f"priority must be an integer, got {priority!r}")
        self.priority = priority
        if cache is not None and not isinstance(cache, (bool, CacheConfig)):
            raise ConfigurationError(f"cache must be True, False or a CacheConfig, got {type(cache).__name__}")
        self.cache: CacheConfig | None = (
            CacheConfig(enabled=cache) if isinstance(cache, bool) else cache
        )
        self.parameters = parameters
        self.id = f"{operator_name}-{next(_ids)}"

    #: The engine's call site for this node (:mod:`nons.core.engine.node`), made at its first pass and kept while
    #: neither the node nor its layer's policy changes; ``None`` until then.
    _call_site: Any

    if not TYPE_CHECKING:  # hidden from type checkers, which would otherwise accept any attribute name on a Node

        def __setattr__(self, name: str, value: Any) -> None:
            # Any change to the node drops the call site the engine made from it: the next pass makes it again
            # from what the node now says.
            object.__setattr__(self, name, value)
            if name != "_call_site":
                object.__setattr__(self, "_call_site", None)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # Copies and pickles leave the engine's call site out (unpickling it would load the engine).
        kept = (name for name in self.__slots__ if name != "_call_site")
        return None, {name: getattr(self, name) for name in kept if hasattr(self, name)}

    @property
    def operator_name(self) -> str:
        return self.spec.name

    def clone(self) -> Node:
        """An independent copy with a new id. The containers in its parameters (dicts, lists, sets, tuples and their
        subclasses, at any depth) are copied: appending to one clone's categories must not change its siblings'.
        Any other value (a client, a retriever, a lock) is shared, as are the model configs, which are frozen."""
        twin = Node.__new__(Node)
        twin.spec = self.spec
        twin.model_config = self.model_config
        twin.additional_prompt_context = self.additional_prompt_context
        twin.fallbacks = self.fallbacks
        twin.priority = self.priority
        twin.cache = self.cache
        twin.parameters = _copied(self.parameters)
        twin.id = f"{self.spec.name}-{next(_ids)}"
        return twin

    def __mul__(self, count: int) -> list[Node]:
        if isinstance(count, bool) or not isinstance(count, int):
            raise ConfigurationError(f"a node can be multiplied only by an integer, got {count!r}")
        if count < 1:
            raise ConfigurationError(f"a node must be multiplied by 1 or more, got {count}")
        return [self.clone() for _ in range(count)]

    __rmul__ = __mul__

    def __repr__(self) -> str:
        model = self.model_config.model_name or "default model"
        return f"Node({self.spec.name!r}, id={self.id!r}, model={model!r})"


def _copied(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``value`` with its containers (dicts, lists, sets and tuples, subclasses such as ``defaultdict`` and named
    tuples included) copied, recursively, and every other object shared: ``deepcopy`` would copy a client or a
    retriever too, or fail on a lock. A container that refers to itself is copied once; one that cannot be
    copied is shared."""
    memo = {} if memo is None else memo
    if id(value) in memo:
        return memo[id(value)]
    try:
        if isinstance(value, dict):
            mapping = memo[id(value)] = copy.copy(value)  # keeps its type and what it holds besides its items
            for key, item in value.items():
                mapping[key] = _copied(item, memo)
            return mapping
        if isinstance(value, list):
            items = memo[id(value)] = copy.copy(value)
            items[:] = [_copied(item, memo) for item in value]
            return items
        if isinstance(value, set):
            # Its members are hashable, so none is a list, dict or set to copy: the set itself is enough.
            members = memo[id(value)] = copy.copy(value)
            return members
        if isinstance(value, tuple):
            parts = [_copied(item, memo) for item in value]
            rebuilt = value._make(parts) if hasattr(value, "_make") else type(value)(parts)  # a named tuple's
            memo[id(value)] = rebuilt
            return rebuilt
    except (TypeError, ValueError, copy.Error):
        memo.pop(id(value), None)
        return value
    return value


def create_node(operator_name: str, model_config: ModelConfig | None = None, **kwargs: Any) -> Node:
    """Build a :class:`Node` (the functional spelling of ``Node(...)``)."""
    return Node(operator_name, model_config, **kwargs)


def _fallback_configs(fallbacks: object) -> tuple[ModelConfig, ...]:
    """``fallbacks`` as a tuple, or a ``ConfigurationError``: a model name or a bare config given here became a
    tuple of characters, or failed at every call as an AttributeError that no error policy knew."""
    hint = "e.g. fallbacks=[ModelConfig(model_name='gpt-4o-mini')]"
    if isinstance(fallbacks, (str, ModelConfig)) or not isinstance(fallbacks, Iterable):
        raise ConfigurationError(f"fallbacks must be a list of ModelConfig, got {type(fallbacks).__name__}; {hint}")
    configs = tuple(fallbacks)
    for config in configs:
        if not isinstance(config, ModelConfig):
            raise ConfigurationError(
                f"fallbacks must be a list of ModelConfig, got a {type(config).__name__} among them; {hint}"
            )
    return configs
