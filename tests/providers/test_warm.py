"""What a vendor SDK would build at its first call is built when its first client is made, on that worker thread."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Annotated, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from nons.providers._warm import model_classes, warm_sdk


class Leaf(BaseModel):
    model_config = ConfigDict(defer_build=True)
    text: str


class Other(BaseModel):
    model_config = ConfigDict(defer_build=True)
    number: int


class Branch(BaseModel):
    model_config = ConfigDict(defer_build=True)
    leaves: list[Leaf]
    maybe: Optional[Other] = None  # noqa: UP045 - the typing form, as the SDKs write it


class Root(BaseModel):
    model_config = ConfigDict(defer_build=True)
    branch: Branch
    either: Union[Leaf, Other, None] = None  # noqa: UP007 - the typing form, as the SDKs write it
    tagged: Annotated[dict[str, Branch], Field(default_factory=dict)]


def test_every_model_class_reachable_through_the_fields_is_found_once_roots_first() -> None:
    found = model_classes([Root])
    assert found[0] is Root
    assert sorted(cls.__name__ for cls in found) == ["Branch", "Leaf", "Other", "Root"]


def test_warming_builds_the_validators_a_first_answer_would_build() -> None:
    assert not any(cls.__pydantic_complete__ for cls in (Root, Branch, Leaf, Other))
    warm_sdk(["json"], [Root])
    assert all(cls.__pydantic_complete__ for cls in (Root, Branch, Leaf, Other))


WARM_THE_REAL_SDKS = textwrap.dedent(
    """
    import json
    from nons.base.types import ModelProvider
    from nons.providers._warm import model_classes
    from nons.providers.registry import get_provider

    report = {}
    for provider in (ModelProvider.OPENAI, ModelProvider.ANTHROPIC, ModelProvider.GOOGLE):
        sdk = get_provider(provider)
        models = model_classes(sdk.warm_models)
        before = sum(not m.__pydantic_complete__ for m in models)
        sdk._make_client("sk-warm-0123456789", "http://127.0.0.1:9")
        after = [m.__name__ for m in models if not m.__pydantic_complete__]
        report[provider.value] = {"models": len(models), "deferred_before": before, "deferred_after": after}
    print(json.dumps(report))
    """
)


def test_making_the_first_client_of_each_sdk_builds_every_model_of_its_answers() -> None:
    # A fresh interpreter: in this one, other tests may have built the SDKs' models already.
    completed = subprocess.run(
        [sys.executable, "-c", WARM_THE_REAL_SDKS], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.splitlines()[-1])
    for provider, counts in report.items():
        assert counts["deferred_before"] > 0, f"{provider}: its SDK no longer defers its validators"
        assert counts["deferred_after"] == [], f"{provider}: still deferred after the first client was made"
