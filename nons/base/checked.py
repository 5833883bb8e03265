"""Frozen dataclasses whose fields pydantic checks, with pydantic loaded at the first instance, not at import.

The configuration types (``ModelConfig``, ``LayerConfig``, ...) were pydantic models. Defining a model class loads
pydantic's model machinery (``pydantic.main`` and its schema generator): ``from nons import NoN, Node,
ModelConfig`` then cost 432M instructions, 1.22x ``import langchain_core.runnables``, and a module defining one
deferred model alone costs 385M (issue 15's target 4 allows 1.00x). A dataclass is defined by the standard library
alone; pydantic checks it when the first instance is made, so a program pays for pydantic only if it uses NoN.

How a class declares its checks: its annotations are strings (``from __future__ import annotations``) written in
pydantic's terms (``Annotated[float | None, Field(ge=0)]``, ``BeforeValidator(f)``, ``SecretStr``), evaluated at
the first instance with pydantic's names in scope (:func:`_pydantic_names`). From them a pydantic model, the
class's *checker*, is built, and every instance is checked by it as the class would be if it were a model: the
same errors (``pydantic.ValidationError``, titled with the class's name), the same coercions (a list given for a
tuple, a string for an enum or a ``SecretStr``), and in :meth:`CheckedConfig.from_mapping` the same refusal of
unknown keys, by name (a keyword the class does not have is a ``TypeError``, as for any Python call).

A checked class nested in a pydantic model (a spec file's, a request body's) or in another checked class is
validated by its checker there too, so an error inside it is located (``fallbacks.0.temperature``).
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel, GetCoreSchemaHandler
    from pydantic_core import CoreSchema

__all__ = ["CheckedConfig", "config_dict"]

_Config = TypeVar("_Config", bound="CheckedConfig")

# Each class's checker, once built. Building one is its class's first instance's work, under the lock: another
# thread waits for it rather than building a second, or validating with one half built. A checker being built is in
# _building, where the build finds it again when the class holds itself (a model's fallbacks are models).
_checkers: dict[type, type[BaseModel]] = {}
_building: dict[type, type[BaseModel]] = {}
# Each checked class's fields and the object each holds when not given (_MADE when a factory makes it).
_defaults: dict[type, tuple[tuple[str, object], ...]] = {}
_MADE = object()
_build_lock = threading.RLock()


class CheckedConfig:
    """Base of the frozen configuration dataclasses: checks every instance's fields with pydantic (see the module).

    A subclass is a ``@dataclass(frozen=True, slots=True, kw_only=True)`` whose string annotations may use the
    pydantic names :func:`_pydantic_names` gives; ``_check_config`` holds the ``pydantic.ConfigDict`` options of
    its checker, and ``_check_whole`` (optional) checks the fields together once each is valid, raising
    ``ValueError``.
    """

    __slots__ = ()

    #: The pydantic ``ConfigDict`` options of the class's checker (``extra="forbid"`` is always among them).
    _check_config: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        cls = type(self)
        checker = _checker(cls)
        # Only what was given is checked: a field still holding its default object holds a valid value, and
        # checking two fields of fourteen makes a ModelConfig in 5 µs, not 8 (the pydantic model took 1.7 µs;
        # configs are made when a network is built, not on a pass's path).
        given = {}
        for name, default in _defaults[cls]:
            value = getattr(self, name)
            if value is not default:
                given[name] = value
        checked = checker.model_validate(given).__dict__
        for name in given:
            object.__setattr__(self, name, checked[name])

    @classmethod
    def from_mapping(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
        """An instance from ``data`` (a spec file's or a request's mapping): ``pydantic.ValidationError`` for a
        value that does not fit, or a key the class does not have."""
        return cls._from_checked(_checker(cls).model_validate(data))

    @classmethod
    def _from_checked(cls: type[_Config], checked: BaseModel) -> _Config:
        # Made without __init__: the values are the checker's, already checked.
        instance = object.__new__(cls)
        for name, value in checked.__dict__.items():
            object.__setattr__(instance, name, value)
        return instance

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """How pydantic validates the class as a field's type: an instance as it is, anything else by the class's
        checker (whose errors keep their location), then made an instance."""
        from pydantic_core import core_schema

        def instance_or_checked(value: Any, check: core_schema.ValidatorFunctionWrapHandler) -> Any:
            return value if isinstance(value, cls) else cls._from_checked(check(value))

        return core_schema.no_info_wrap_validator_function(
            instance_or_checked,
            handler.generate_schema(_checker(cls)),
            serialization=core_schema.plain_serializer_function_ser_schema(config_dict),
        )


def config_dict(config: CheckedConfig, *, defaults: bool = True) -> dict[str, Any]:
    """``config``'s fields by name, one level deep (nested configs stay instances); with ``defaults=False`` only
    those whose value is not their default."""
    found = {}
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        if not defaults and value == _default(field):
            continue
        found[field.name] = value
    return found


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _checker(cls: type[CheckedConfig]) -> type[BaseModel]:
    """The pydantic model that checks ``cls``'s fields, built at its first use."""
    checker = _checkers.get(cls)
    if checker is None:
        with _build_lock:
            checker = _checkers.get(cls) or _building.get(cls) or _build_checker(cls)
    return checker


def _build_checker(cls: type[CheckedConfig]) -> type[BaseModel]:
    import pydantic

    hints = typing.get_type_hints(cls, localns=_pydantic_names(), include_extras=True)
    fields: dict[str, Any] = {}
    defaults: list[tuple[str, object]] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.default_factory is not dataclasses.MISSING:
            default = pydantic.Field(default_factory=field.default_factory)
            defaults.append((field.name, _MADE))
        elif field.default is not dataclasses.MISSING:
            default = field.default
            defaults.append((field.name, default))
        else:
            default = ...
            defaults.append((field.name, _MADE))
        fields[field.name] = (hints[field.name], default)
    _defaults[cls] = tuple(defaults)
    validators: dict[str, Any] = {}
    check_whole = getattr(cls, "_check_whole", None)
    if check_whole is not None:

        def whole(checked: Any) -> Any:
            check_whole(checked)
            return checked

        validators["check_whole"] = pydantic.model_validator(mode="after")(whole)  # type: ignore[arg-type]
    # Defined unbuilt, then built once it is in _building: a class that holds itself then refers to the checker
    # being built, rather than starting a second build of it without end.
    config: Any = {"extra": "forbid", "protected_namespaces": (), "defer_build": True, **cls._check_config}
    checker: type[BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
        cls.__name__, __config__=config, __validators__=validators, __module__=cls.__module__, **fields
    )
    _building[cls] = checker
    try:
        checker.model_rebuild(force=True)
    finally:
        del _building[cls]
    _checkers[cls] = checker
    return checker


def _pydantic_names() -> dict[str, Any]:
    """The names a checked class's annotations may use besides its module's: pydantic's field and validator
    markers, and its secret type."""
    import pydantic

    return {
        name: getattr(pydantic, name)
        for name in ("AfterValidator", "BeforeValidator", "Field", "SecretStr", "WrapValidator")
    }
