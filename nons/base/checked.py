"""Frozen dataclasses whose fields pydantic checks, with pydantic loaded at the first instance, not at import.

The configuration types (``ModelConfig``, ``LayerConfig``, ...) were pydantic models. Defining a model class loads
pydantic's model machinery (``pydantic.main`` and its schema generator): ``from nons import NoN, Node,
ModelConfig`` then cost 432M instructions, 1.22x ``import langchain_core.runnables``, and a module defining one
deferred model alone costs 385M (issue 15's target 4 allows 1.00x). A dataclass is defined by the standard library
alone; pydantic checks it from the first instance made, so a program pays for pydantic when it makes its first
config, not when it imports NoN.

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
import functools
import re
import threading
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel, GetCoreSchemaHandler, TypeAdapter
    from pydantic_core import CoreSchema

__all__ = ["CheckedConfig", "config_dict", "dump"]

_Config = TypeVar("_Config", bound="CheckedConfig")

# Each class's checker (see _checker), and before pydantic 2.14 the one being built, with the lock it is built under.
_checkers: dict[type, type[BaseModel]] = {}
_building: dict[type, type[BaseModel]] = {}
# Each checked class's fields and the object each holds when not given (_MADE when none is shared: a factory makes
# it, or the field is required).
_defaults: dict[type, tuple[tuple[str, object], ...]] = {}
_MADE = object()
_adapters: dict[type, TypeAdapter[Any]] = {}
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
        """How pydantic handles the class as a field's type. Validation: an instance as it is, anything else by
        the class's checker (whose errors keep their location), then made an instance. Serialization: by the
        checker too, so that ``include``, ``exclude`` and ``exclude_defaults`` reach the config's fields, and
        the key is masked in JSON; the fields set are those that are not their default."""
        from pydantic_core import core_schema

        checker = _checker(cls)
        schema = handler.generate_schema(checker)

        def instance_or_checked(value: Any, check: core_schema.ValidatorFunctionWrapHandler) -> Any:
            return value if isinstance(value, cls) else cls._from_checked(check(value))

        def as_checked(value: Any, serialize: core_schema.SerializerFunctionWrapHandler) -> Any:
            if not isinstance(value, cls):
                return serialize(value)
            fields = config_dict(value)
            given = {
                name
                for name, info in checker.model_fields.items()
                if info.is_required() or fields[name] != info.get_default(call_default_factory=True)
            }
            return serialize(checker.model_construct(_fields_set=given, **fields))

        return core_schema.no_info_wrap_validator_function(
            instance_or_checked,
            schema,
            serialization=core_schema.wrap_serializer_function_ser_schema(as_checked, schema=schema),
        )


def config_dict(config: CheckedConfig) -> dict[str, Any]:
    """``config``'s fields by name, one level deep (nested configs stay instances)."""
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}  # type: ignore[arg-type]


def dump(config: CheckedConfig, **options: Any) -> dict[str, Any]:
    """``config`` as pydantic would dump it were it a model: ``options`` are ``model_dump``'s (``mode="json"``,
    ``exclude``, ``exclude_defaults``, ...)."""
    from pydantic import TypeAdapter

    adapter = _adapters.get(type(config))
    if adapter is None:
        adapter = _adapters.setdefault(type(config), TypeAdapter(type(config)))
    dumped: dict[str, Any] = adapter.dump_python(config, **options)
    return dumped


def _checker(cls: type[CheckedConfig]) -> type[BaseModel]:
    """The pydantic model that checks ``cls``'s fields. Defined at its first use, and built at its first
    validation: by pydantic, under pydantic's lock, from 2.14 (a model deferred its build then); under NoN's own
    before (pydantic#13438: two threads building one model at once could get the wrong validator)."""
    checker = _checkers.get(cls)
    if checker is not None:
        return checker
    if _pydantic_builds_under_a_lock():
        # Two threads may define one each: the first stored is the one both use. No lock of NoN's is held while
        # pydantic builds: pydantic holds its own, and a model of the application's being built under it may
        # need this checker (a config as a field) from another thread.
        return _checkers.setdefault(cls, _defined_checker(cls))
    with _build_lock:
        checker = _checkers.get(cls) or _building.get(cls)
        if checker is None:
            # Built here, once it is in _building: a class that holds itself (a model's fallbacks are models)
            # then refers to the checker being built, rather than starting a second build of it without end.
            checker = _building[cls] = _defined_checker(cls)
            try:
                checker.model_rebuild(force=True)
            finally:
                del _building[cls]
            _checkers[cls] = checker
    return checker


@functools.cache
def _pydantic_builds_under_a_lock() -> bool:
    import pydantic

    # Its major and minor numbers only: a pre-release is spelt "2.0b3".
    found = re.match(r"(\d+)\.(\d+)", pydantic.VERSION)
    return found is not None and (int(found.group(1)), int(found.group(2))) >= (2, 14)


def _defined_checker(cls: type[CheckedConfig]) -> type[BaseModel]:
    """``cls``'s checker, defined and not yet built."""
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
    _defaults.setdefault(cls, tuple(defaults))
    validators: dict[str, Any] = {}
    check_whole = getattr(cls, "_check_whole", None)
    if check_whole is not None:

        def whole(checked: Any) -> Any:
            check_whole(checked)
            return checked

        validators["check_whole"] = pydantic.model_validator(mode="after")(whole)  # type: ignore[arg-type]
    config: Any = {"extra": "forbid", "protected_namespaces": (), "defer_build": True, **cls._check_config}
    checker: type[BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
        cls.__name__, __config__=config, __doc__=cls.__doc__, __validators__=validators, __module__=cls.__module__,
        **fields,
    )
    return checker


def _pydantic_names() -> dict[str, Any]:
    """The names a checked class's annotations may use besides its module's: pydantic's field and validator
    markers, and its secret type."""
    import pydantic

    return {
        name: getattr(pydantic, name)
        for name in ("AfterValidator", "BeforeValidator", "Field", "SecretStr", "WrapValidator")
    }
