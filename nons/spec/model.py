"""The shape of a network spec file, as pydantic models.

These models check the file's structure: which keys exist, what is a list and what a mapping, and the
shorthand strings. The values that belong to the engine's own types (a model's temperature, a layer's error
policy, a network's timeout) are left to those types (``ModelConfig``, ``LayerConfig``, ``NetworkConfig``), which
the builder calls with the same keys, so the rules live in one place and a file accepts what the Python API
accepts. See ``nons/spec/__init__.py`` for the format.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from nons.spec.grammar import ALIAS_NAME, parse_model_ref, parse_node

__all__ = ["DefaultsSpec", "LayerSpecModel", "ModelSpec", "NetworkSpec", "NodeSpec", "SpecFile"]

#: Versions of the format this code reads.
SUPPORTED_VERSIONS = (1,)


def _model_name(name: str) -> str:
    if "/" in name:
        raise ValueError(f"model name {name!r} must not contain '/': that is how provider/model is written")
    if not ALIAS_NAME.match(name):
        raise ValueError(f"model name {name!r} must start with a letter or '_', then letters, digits, '_', '-', '.'")
    return name


def _network_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"network name {name!r} must be letters, digits, '-', '_' or '.' (it is part of a URL)")
    return name


# Checked as keys, so that a problem is said at the name's own line (a dict validator's was the section's).
ModelName = Annotated[str, AfterValidator(_model_name)]
NetworkName = Annotated[str, AfterValidator(_network_name)]


class ModelSpec(BaseModel):
    """A model: ``model`` is ``provider/model`` or the name of an entry of ``models:``; every other key is a
    ``ModelConfig`` field (temperature, max_tokens, top_p, stop, base_url, extra_params) that overrides it.

    A plain string stands for ``{model: <string>}``. ``fallbacks`` are model references too.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    fallbacks: list[ModelSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_validator("model")
    @classmethod
    def _reference(cls, value: str) -> str:
        parse_model_ref(value)
        return value.strip()

    @property
    def settings(self) -> dict[str, Any]:
        """The ``ModelConfig`` fields given besides ``model`` and ``fallbacks``."""
        return dict(self.model_extra or {})


class NodeSpec(BaseModel):
    """A node: an operator with its model, prompt context, operator parameters, fallbacks and clone count.

    A string is the shorthand ``[COUNT x] OPERATOR[@MODEL]`` (see :mod:`nons.spec.grammar`).
    """

    model_config = ConfigDict(extra="forbid")

    operator: str
    model: ModelSpec | None = None
    context: str = Field(
        default="",
        description="Added to the system prompt of every call (additional_prompt_context).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="The operator's own parameters.")
    fallbacks: list[ModelSpec] = Field(default_factory=list)
    priority: int = 0
    count: int = Field(
        default=1, ge=1, le=1000,
        description="How many independent clones of this node the layer holds.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            parsed = parse_node(value)
            node: dict[str, Any] = {"operator": parsed.operator, "count": parsed.count}
            if parsed.model is not None:
                node["model"] = parsed.model
            return node
        return value


class LayerSpecModel(BaseModel):
    """A layer: its nodes, and any ``LayerConfig`` field (error_policy, max_retries, timeout_seconds,
    min_success_threshold, retry_base_delay, retry_multiplier, retry_max_delay) as a key of its own.

    Shorter forms: a string is a one-node layer, a list is a layer of those nodes, and a mapping with
    ``operator`` is a one-node layer.
    """

    model_config = ConfigDict(extra="allow")

    nodes: list[NodeSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_short_forms(cls, value: Any) -> Any:
        if isinstance(value, (str, list)):
            return {"nodes": value if isinstance(value, list) else [value]}
        if isinstance(value, dict) and "operator" in value and "nodes" not in value:
            # One node, and the layer's own keys beside it (error_policy: ...): a layer key was refused as not
            # part of the format.
            node = {key: item for key, item in value.items() if key in NodeSpec.model_fields}
            return {"nodes": [node], **{key: item for key, item in value.items() if key not in node}}
        return value

    @property
    def config(self) -> dict[str, Any]:
        """The ``LayerConfig`` fields given for this layer (empty: the network's default applies)."""
        return dict(self.model_extra or {})


class DefaultsSpec(BaseModel):
    """What nodes and layers use when they say nothing: a model, and ``LayerConfig`` fields under ``layer``."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSpec | None = None
    layer: dict[str, Any] = Field(default_factory=dict)


class NetworkSpec(BaseModel):
    """A network: its layers in order, defaults, and any ``NetworkConfig`` field (timeout_seconds,
    max_input_chars). Its name is its key under ``networks:``."""

    model_config = ConfigDict(extra="allow")

    description: str = ""
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    layers: list[LayerSpecModel] = Field(min_length=1)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SpecFile(BaseModel):
    """A whole spec file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    models: dict[ModelName, ModelSpec] = Field(default_factory=dict)
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    networks: dict[NetworkName, NetworkSpec] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value not in SUPPORTED_VERSIONS:
            raise ValueError(f"version {value} is not supported; this NoN reads version(s) {SUPPORTED_VERSIONS}")
        return value

