"""From a validated spec file to ``NoN`` networks, through the public constructors of the Python API.

Every value goes through the engine's own types (``ModelConfig``, ``LayerConfig``, ``NetworkConfig``, ``Node``),
so a spec accepts exactly what the Python API accepts and both build the same network. Problems are collected,
not raised one by one, each with the path of the field it concerns; :mod:`nons.spec.loader` turns the paths
into file lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from nons.base.checked import config_dict
from nons.base.redaction import is_credential_name
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ConfigurationError, LayerConfig, ModelConfig, NetworkConfig
from nons.spec.errors import Path
from nons.spec.grammar import parse_model_ref
from nons.spec.model import LayerSpecModel, ModelSpec, NetworkSpec, NodeSpec, SpecFile

__all__ = ["UNKNOWN_KEY", "BuildProblems", "build_networks", "refused_network_problems"]

_SECRET_FIELDS = ("api_key",)
#: Node's own keywords, where a spec sets them instead of under a node's ``params:``.
_NODE_KEYWORDS = {
    "model_config": "a node's model is its model: key",
    "additional_prompt_context": "a node's prompt context is its context: key",
    "fallbacks": "a node's fallbacks are its fallbacks: key",
    "priority": "a node's priority is its priority: key",
    "cache": "caching is set in Python (Node(..., cache=...)) or by the network's cache: setting",
}
#: ModelConfig fields a model reference's ``model:`` sets: not settings of their own.
_NAMED_BY_MODEL = frozenset({"provider", "model_name"})
_KEYS_FROM_THE_ENVIRONMENT = (
    "set the provider's key variable (ANTHROPIC_API_KEY, OPENAI_API_KEY, GOOGLE_API_KEY), "
    "e.g. from a Kubernetes Secret"
)
UNKNOWN_KEY = "unknown key (not part of the spec format; check its spelling)"


def _credential_params(extra_params: object, depth: int = 0) -> list[Path]:
    """The paths of a spec's ``extra_params`` keys that name a credential, at any depth (``extra_query:
    {api-key: ...}`` sends a key as well as a top-level ``api_key``). Headers are let through (a gateway's
    ``HTTP-Referer``), and shown by name only (:mod:`nons.spec.describe`)."""
    if isinstance(extra_params, (list, tuple)) and depth <= 16:  # a list of objects: extra_body: {plugins: [...]}
        items = enumerate(extra_params)
        return [(index, *inner) for index, item in items for inner in _credential_params(item, depth + 1)]
    if not isinstance(extra_params, dict) or depth > 16:
        return []
    found: list[Path] = []
    for key, value in extra_params.items():
        name = str(key)
        if name.lower().endswith("headers"):
            continue
        if is_credential_name(name):
            found.append((name,))
        else:
            found.extend((name, *inner) for inner in _credential_params(value, depth + 1))
    return found


class BuildProblems(ConfigurationError):
    """The problems found while building, each as ``(path, message)``."""

    def __init__(self, problems: list[tuple[Path, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def build_networks(spec: SpecFile) -> dict[str, NoN]:
    """Build every network of ``spec``, by name. Raises :class:`BuildProblems` listing every problem."""
    builder = _Builder(spec)
    for name in spec.models:  # each checked, used or not (an api_key in an unused one is refused as well)
        builder.alias(name, ("models", name), ())
    networks = {name: builder.network(name, net) for name, net in spec.networks.items()}
    if builder.problems:
        # Once each: the file-wide defaults are built for every network that uses them.
        raise BuildProblems(list(dict.fromkeys(builder.problems)))
    return {name: network for name, network in networks.items() if network is not None}


def refused_network_problems(
    spec: SpecFile, network: str | int, layers: Mapping[int, LayerSpecModel], config: Mapping[str, Any]
) -> list[tuple[Path, str]]:
    """The build problems of a network the schema refused, so that one check reports them with its schema
    problems: those of ``layers``, its layers that are valid by themselves (unknown operators, parameters,
    models), at their places, and those of ``config``, its own settings (``timeout_seconds``, an unknown key...).
    Built without the network's defaults (they may be what is wrong), so a node that names no model is not
    checked against one."""
    builder = _Builder(spec)
    for index, layer in layers.items():
        builder.layer(layer, ("networks", network, "layers", index), None)
    builder.network_config(str(network), dict(config), ("networks", network), None)
    return builder.problems


def _validation_problems(error: ValidationError, path: Path, renames: Mapping[str, str]) -> list[tuple[Path, str]]:
    """The errors of an engine type built from the spec, at the paths of the spec's fields."""
    problems = []
    for detail in error.errors(include_url=False):
        loc = tuple(renames.get(part, part) if isinstance(part, str) else part for part in detail["loc"])
        message = str(detail["msg"]).removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = UNKNOWN_KEY
        problems.append(((*path, *loc), message))
    return problems


class _Builder:
    def __init__(self, spec: SpecFile) -> None:
        self.spec = spec
        self.problems: list[tuple[Path, str]] = []
        #: Each entry of ``models:`` built once, however many nodes use it: its problems are said once.
        self._aliases: dict[str, ModelConfig | None] = {}
        #: The file-wide default model, built once for every network that uses it.
        self._default_model: tuple[ModelConfig | None] | None = None

    def fail(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    # --- models -------------------------------------------------------------------------------------------
    def model(self, ref: ModelSpec, path: Path, seen: tuple[str, ...] = ()) -> ModelConfig | None:
        """The ``ModelConfig`` of a reference: ``provider/model`` with its settings, or an alias of ``models:``
        with the reference's settings on top (``extra_params`` merged key by key)."""
        settings = ref.settings
        for secret in _SECRET_FIELDS:
            if secret in settings:
                self.fail(
                    (*path, secret),
                    f"{secret} does not belong in a spec file; {_KEYS_FROM_THE_ENVIRONMENT}",
                )
                return None
        for keys in _credential_params(settings.get("extra_params")):
            self.fail(
                (*path, "extra_params", *keys),
                f"{keys[-1]} looks like a credential and does not belong in a spec file; {_KEYS_FROM_THE_ENVIRONMENT}",
            )
            return None
        for named in _NAMED_BY_MODEL.intersection(settings):
            # They overrode what model: says (model: openai/gpt-4o with model_name: gpt-4o-mini called gpt-4o-mini).
            self.fail((*path, named), f"{named} is given by model: ('provider/model', e.g. 'openai/gpt-4o-mini')")
            return None
        fallbacks = [self.model(f, (*path, "fallbacks", i)) for i, f in enumerate(ref.fallbacks)]
        if any(f is None for f in fallbacks):
            return None
        provider, name = parse_model_ref(ref.model)
        fields: dict[str, Any]
        if provider is None:
            base = self.alias(name, path, seen)
            if base is None:
                return None
            fields = config_dict(base)
            del fields["api_key"]
            fields["extra_params"] = {**base.extra_params, **settings.pop("extra_params", {})}
            fields.update(settings)
            if ref.fallbacks:
                fields["fallbacks"] = fallbacks
        else:
            fields = {"provider": provider, "model_name": name, **settings, "fallbacks": fallbacks}
        try:
            return ModelConfig.from_mapping(fields)
        except ValidationError as error:
            renames = {"provider": "model", "model_name": "model"}
            self.problems.extend(_validation_problems(error, path, renames))
            return None

    def alias(self, name: str, path: Path, seen: tuple[str, ...]) -> ModelConfig | None:
        entry = self.spec.models.get(name)
        if entry is None:
            known = ", ".join(sorted(self.spec.models)) or "none are defined"
            self.fail(
                (*path, "model"),
                f"unknown model {name!r}: write 'provider/model' (e.g. 'openai/gpt-4o-mini') or the name of an "
                f"entry of models: ({known})",
            )
            return None
        if name in self._aliases:
            return self._aliases[name]
        if name in seen:
            self.fail(("models", name, "model"), f"models refer to each other in a loop: {' -> '.join((*seen, name))}")
            return None
        built = self._aliases[name] = self.model(entry, ("models", name), (*seen, name))
        return built

    def file_default_model(self) -> ModelConfig | None:
        """The model of the file's ``defaults:``, built (and its problems said) once for all networks."""
        if self._default_model is None:
            ref = self.spec.defaults.model
            self._default_model = (self.model(ref, ("defaults", "model")) if ref is not None else None,)
        return self._default_model[0]

    # --- nodes, layers, networks --------------------------------------------------------------------------
    def nodes(self, spec: NodeSpec, path: Path, default_model: ModelConfig | None) -> list[Node]:
        model = self.model(spec.model, (*path, "model")) if spec.model is not None else default_model
        if spec.model is not None and model is None:
            return []
        fallbacks = [self.model(f, (*path, "fallbacks", i)) for i, f in enumerate(spec.fallbacks)]
        if any(f is None for f in fallbacks):
            return []
        misplaced = _NODE_KEYWORDS.keys() & spec.params.keys()
        for key in sorted(misplaced):
            # Node's own keywords, not the operator's: Node(..., priority=..., **params) failed with a TypeError.
            self.fail((*path, "params", key), f"{key} is not an operator parameter: {_NODE_KEYWORDS[key]}")
        if misplaced:
            return []
        try:
            node = Node(
                spec.operator,
                model,
                spec.context,
                fallbacks=[f for f in fallbacks if f is not None],
                priority=spec.priority,
                **spec.params,
            )
        except ConfigurationError as error:
            # The operator is unknown, or its parameters do not fit it: the message says which.
            field = "operator" if "unknown operator" in str(error) else "params"
            self.fail((*path, field), str(error))
            return []
        except TypeError as error:  # a parameter named as one of Node's own arguments (operator_name, self)
            self.fail((*path, "params"), f"a parameter is named as one of the node's own arguments: {error}")
            return []
        return [node] if spec.count == 1 else node * spec.count

    def layer(self, spec: LayerSpecModel, path: Path, default_model: ModelConfig | None) -> Layer | None:
        nodes: list[Node] = []
        for j, node_spec in enumerate(spec.nodes):
            nodes.extend(self.nodes(node_spec, (*path, "nodes", j), default_model))
        config = self.layer_config(spec.config, path) if spec.config else None
        if not nodes or len(nodes) < sum(n.count for n in spec.nodes) or (spec.config and config is None):
            return None
        return Layer(nodes, config)

    def layer_config(self, fields: dict[str, Any], path: Path) -> LayerConfig | None:
        try:
            return LayerConfig.from_mapping(fields)
        except ValidationError as error:
            self.problems.extend(_validation_problems(error, path, {}))
            return None

    def network(self, name: str, spec: NetworkSpec) -> NoN | None:
        path: Path = ("networks", name)
        if spec.defaults.model is not None:
            default_model = self.model(spec.defaults.model, (*path, "defaults", "model"))
        else:
            default_model = self.file_default_model()
        layer_defaults = {**self.spec.defaults.layer, **spec.defaults.layer}
        layer_default = None
        if layer_defaults:
            defaults_path: Path = (*path, "defaults", "layer") if spec.defaults.layer else ("defaults", "layer")
            layer_default = self.layer_config(layer_defaults, defaults_path)
        layers = [self.layer(layer, (*path, "layers", i), default_model) for i, layer in enumerate(spec.layers)]
        config = self.network_config(name, spec.config, path, layer_default)
        if config is None or self.problems:  # any problem fails the whole build: no network is made
            return None
        return NoN([layer for layer in layers if layer is not None], config=config)

    def network_config(
        self, name: str, fields: dict[str, Any], path: Path, layer_default: LayerConfig | None
    ) -> NetworkConfig | None:
        """The ``NetworkConfig`` of a network's own keys (those the spec format does not define)."""
        reserved = {"name", "default_layer_config"} & set(fields)
        for key in sorted(reserved):
            hint = "its key under networks:" if key == "name" else "defaults: layer:"
            self.fail((*path, key), f"{key} is not set here: a network's {key} is {hint}")
        extras = {key: value for key, value in fields.items() if key not in reserved}
        try:
            config = NetworkConfig.from_mapping({**extras, "name": name, "default_layer_config": layer_default})
        except ValidationError as error:
            self.problems.extend(_validation_problems(error, path, {}))
            return None
        return config if not reserved else None
