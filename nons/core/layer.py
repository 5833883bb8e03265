"""A layer: nodes that run concurrently on the same step, under one error policy.

What a layer is, not how it runs (:mod:`nons.core.engine.layer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nons.base.errors import ConfigurationError
from nons.base.types import LayerConfig
from nons.core.node import Node

__all__ = ["Layer", "LayerSpec", "create_layer", "distribute"]

#: What may stand for a layer: an operator name, a Node, a list of them (lists from ``node * n`` included),
#: or a Layer.
LayerSpec = Any


class Layer:
    """Nodes that run side by side. ``config`` overrides the network's layer config for this layer."""

    __slots__ = ("config", "nodes")

    def __init__(self, nodes: Sequence[Node], config: LayerConfig | None = None) -> None:
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise ConfigurationError(f"a Layer's nodes must be a list of Nodes, got {type(nodes).__name__}")
        if not nodes:
            raise ConfigurationError("a layer needs at least one node")
        for node in nodes:
            # Checked here, not found at the first pass (an AttributeError from the engine, inside an open span).
            if not isinstance(node, Node):
                raise ConfigurationError(
                    f"a Layer's nodes must be Nodes, got {type(node).__name__}: {node!r} "
                    "(create_layer and NoN.from_operators also take operator names)"
                )
        if config is not None and not isinstance(config, LayerConfig):
            raise ConfigurationError(f"layer config must be a LayerConfig, got {type(config).__name__}")
        self.nodes = list(nodes)
        self.config = config

    @property
    def width(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Layer({[n.operator_name for n in self.nodes]})"


def distribute(value: Any, width: int) -> list[Any]:
    """Each node's input: a list as long as a layer of two or more nodes is zipped, else all get ``value``."""
    if width > 1 and isinstance(value, list) and len(value) == width:
        return value
    return [value] * width


def create_layer(spec: LayerSpec, config: LayerConfig | None = None) -> Layer:
    """A :class:`Layer` from an operator name, a Node, a Layer, or a list of names and Nodes."""
    if isinstance(spec, Layer):
        return spec if config is None else Layer(spec.nodes, config)
    if isinstance(spec, (str, Node)):
        items: list[Any] = [spec]
    elif isinstance(spec, (list, tuple)):
        items = []
        for item in spec:
            # `Node("generate") * 3` is a list: accept it inside a layer list.
            items.extend(item if isinstance(item, (list, tuple)) else [item])
    else:
        raise ConfigurationError(
            f"a layer must be an operator name, a Node, a Layer or a list of them, got {type(spec).__name__}"
        )
    nodes: list[Node] = []
    for item in items:
        if isinstance(item, str):
            nodes.append(Node(item))
        elif isinstance(item, Node):
            nodes.append(item)
        else:
            raise ConfigurationError(
                f"a layer's members must be operator names or Nodes, got {type(item).__name__}: {item!r}"
            )
    return Layer(nodes, config)
