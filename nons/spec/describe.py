"""A network's structure as plain data (for ``GET /v1/networks`` and for comparing two networks) and as a tree
in the terminal (``nons check``)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from rich.text import Text
from rich.tree import Tree

from nons.base.checked import dump
from nons.base.redaction import displayable_url, hide_credential_params
from nons.base.settings import get_settings
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig

__all__ = ["describe_network", "network_tree"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _model(config: ModelConfig) -> dict[str, Any]:
    # Every field that was set, never the key: the description is served to callers.
    data = dump(config, mode="json", exclude={"api_key", "fallbacks"}, exclude_defaults=True)
    if config.base_url:
        data["base_url"] = displayable_url(config.base_url)
    if "extra_params" in data:  # an extra_headers or a key given as a parameter: named, never shown
        data["extra_params"] = hide_credential_params(data["extra_params"])
    data["provider"] = config.provider.value if config.provider is not None else None
    data["model_name"] = config.model_name
    if config.fallbacks:
        data["fallbacks"] = [_model(f) for f in config.fallbacks]
    return data


def _layer_config(config: LayerConfig | None) -> dict[str, Any] | None:
    return None if config is None else dump(config, mode="json")


def _node(node: Node) -> dict[str, Any]:
    return {
        "operator": node.operator_name,
        "uses_llm": node.spec.uses_llm,
        "model": _model(node.model_config),
        "context": node.additional_prompt_context,
        "parameters": _jsonable(hide_credential_params(node.parameters)),
        "fallbacks": [_model(f) for f in node.fallbacks],
        "priority": node.priority,
    }


def describe_network(network: NoN) -> dict[str, Any]:
    """The network's structure as JSON-ready data: its settings, and each layer's config and nodes with their
    operator, model, prompt context, parameters, fallbacks and priority. Ids are left out, so that two networks
    built the same way describe the same."""
    return {
        "name": network.name,
        "timeout_seconds": network.config.timeout_seconds,
        "max_input_chars": network.config.max_input_chars,
        "layer_config": _layer_config(network.layer_config),
        "layers": [
            {"width": layer.width, "config": _layer_config(layer.config), "nodes": [_node(n) for n in layer.nodes]}
            for layer in network.layers
        ],
    }


def _model_label(model: dict[str, Any]) -> str:
    if model["provider"] is None and model["model_name"] is None:
        return "default model"
    label = f"{model['provider'] or 'default provider'}/{model['model_name'] or 'default model'}"
    settings = [f"{k}={v}" for k, v in model.items() if k not in ("provider", "model_name", "fallbacks")]
    if settings:
        label += f" ({', '.join(settings)})"
    if model.get("fallbacks"):
        label += " → " + " → ".join(_model_label(f) for f in model["fallbacks"])
    return label


def _policy_label(config: dict[str, Any] | None) -> str:
    if config is None:
        return ""
    label = str(config["error_policy"])
    if config["error_policy"] in ("retry_with_backoff", "fallback_model"):
        label += f", {config['max_retries']} retries"
    if config.get("min_success_threshold") is not None:
        label += f", ≥{config['min_success_threshold']:.0%} must succeed"
    if config.get("timeout_seconds") is not None:
        label += f", timeout {config['timeout_seconds']} s"
    return label


def network_tree(network: NoN, description: str = "") -> Tree:
    """A rich Tree of the network: layers, and nodes (identical clones counted as ``5 ×``)."""
    data = describe_network(network)
    head = Text(data["name"], style="bold")
    settings = [f"{len(data['layers'])} layer{'s' if len(data['layers']) != 1 else ''}"]
    if data["layer_config"]:
        settings.append(_policy_label(data["layer_config"]))
    if data["timeout_seconds"] is not None:
        settings.append(f"timeout {data['timeout_seconds']} s")
    head.append(f"  ({'; '.join(settings)})", style="dim")
    if description:
        head.append(f"  {description}", style="italic")
    tree = Tree(head)
    # A network without a default layer config runs under NON_ERROR_POLICY, as the engine does.
    default_policy = (data["layer_config"] or {}).get("error_policy", get_settings().error_policy.value)
    for index, layer in enumerate(data["layers"]):
        policy = layer["config"].get("error_policy", default_policy) if layer["config"] else default_policy
        label = Text(f"layer {index}", style="bold cyan")
        if layer["config"]:
            label.append(f"  {_policy_label(layer['config'])}", style="yellow")
        branch = tree.add(label)
        for node, same in groupby(layer["nodes"]):
            count = len(list(same))
            text = Text(f"{count} × " if count > 1 else "")
            text.append(node["operator"], style="bold")
            if node["uses_llm"]:
                text.append(f" @ {_model_label(node['model'])}", style="magenta")
            if node["parameters"]:
                text.append("  " + ", ".join(f"{k}={v!r}" for k, v in node["parameters"].items()))
            if node["fallbacks"]:
                text.append("  fallbacks: " + " → ".join(_model_label(f) for f in node["fallbacks"]), style="dim")
            fallbacks = node["fallbacks"] or (node["model"] or {}).get("fallbacks")
            if fallbacks and policy != ErrorPolicy.FALLBACK_MODEL.value:
                # Drawn as a chain, they read as failover the layer's policy never uses.
                text.append(f"  (fallbacks unused: the layer's policy is {policy}, not fallback_model)", style="yellow")
            if node["context"]:
                text.append(f"  context: {node['context'][:60]!r}", style="dim")
            branch.add(text)
    return tree
