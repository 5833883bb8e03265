"""The configuration types are frozen dataclasses that pydantic checks (nons.base.checked): as strict as the pydantic
models they were, and usable inside pydantic models of one's own."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import textwrap
import weakref

import pydantic
import pytest

from nons import Budget, LayerConfig, ModelConfig, ModelProvider, NetworkConfig, StructuredOutput


class _Request(pydantic.BaseModel):
    model: ModelConfig
    network: NetworkConfig | None = None


def test_a_config_is_checked_and_coerced_when_made() -> None:
    config = ModelConfig(provider="OpenAI", stop="END", api_key="sk-live-1", fallbacks=[ModelConfig()])  # type: ignore[arg-type]
    assert config.provider is ModelProvider.OPENAI
    assert config.stop == ("END",)
    assert isinstance(config.api_key, pydantic.SecretStr) and config.api_key.get_secret_value() == "sk-live-1"
    assert config.fallbacks == (ModelConfig(),)
    with pytest.raises(pydantic.ValidationError, match="less than or equal to 2") as refused:
        ModelConfig(temperature=2.5)
    assert refused.value.title == "ModelConfig"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.temperature = 1.0  # type: ignore[misc]


def test_replace_is_a_checked_copy() -> None:
    config = ModelConfig(model_name="m", temperature=0.2)
    assert dataclasses.replace(config, structured_output="prompt").structured_output is StructuredOutput.PROMPT  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="max_tokens"):
        dataclasses.replace(config, max_tokens=0)


def test_from_mapping_refuses_unknown_keys_by_name_and_locates_nested_errors() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        NetworkConfig.from_mapping({"timout_seconds": 5, "default_layer_config": {"max_retries": -1}})
    locations = {error["loc"] for error in refused.value.errors()}
    assert locations == {("timout_seconds",), ("default_layer_config", "max_retries")}
    config = NetworkConfig.from_mapping({"budgets": [{"usd": 2, "per": "process"}], "default_layer_config": {}})
    assert config.budgets == (Budget(usd=2, per="process"),)  # type: ignore[arg-type]
    assert config.default_layer_config == LayerConfig()


def test_a_whole_config_check_runs_after_its_fields() -> None:
    with pytest.raises(pydantic.ValidationError, match="min_success_threshold applies to"):
        LayerConfig(min_success_threshold=0.5)
    with pytest.raises(pydantic.ValidationError, match="two pass budgets named"):
        NetworkConfig(budgets=(Budget(usd=1), Budget(usd=2)))


def test_a_config_inside_a_pydantic_model_validates_as_a_field_and_dumps_without_its_key() -> None:
    body = _Request.model_validate(
        {"model": {"provider": "mock", "fallbacks": [{"model_name": "b", "api_key": "sk-fallback-key"}]}}
    )
    assert isinstance(body.model, ModelConfig) and isinstance(body.model.fallbacks[0], ModelConfig)
    given = ModelConfig(model_name="a")
    assert _Request(model=given).model is given
    dumped = body.model_dump_json()
    assert "sk-fallback-key" not in dumped and '"provider":"mock"' in dumped
    with pytest.raises(pydantic.ValidationError) as refused:
        _Request.model_validate({"model": {"fallbacks": [{"top_p": 0}]}})
    assert [error["loc"] for error in refused.value.errors()] == [("model", "fallbacks", 0, "top_p")]
    assert "ModelConfig" in _Request.model_json_schema()["$defs"]


def test_a_nested_config_dumps_as_a_nested_model_would() -> None:
    # model_dump's and FastAPI's output filters reach the config's fields; fields "set" are those not at their
    # default.
    body = _Request(model={"model_name": "x", "api_key": "sk-filtered"}, network={"timeout_seconds": 5})  # type: ignore[arg-type]
    assert "api_key" not in body.model_dump(exclude={"model": {"api_key"}})["model"]
    assert body.model_dump(include={"model": {"model_name"}}) == {"model": {"model_name": "x"}}
    assert body.model_dump(exclude_defaults=True)["network"] == {"timeout_seconds": 5.0}
    assert body.model_dump(exclude_unset=True)["network"] == {"timeout_seconds": 5.0}
    assert set(body.model_dump(exclude_none=True)["model"]) == {
        "model_name", "api_key", "extra_params", "fallbacks", "structured_output"
    }
    assert body.model_dump(mode="json")["model"]["api_key"] == "**********"


def test_the_json_schema_describes_each_config_with_its_docstring() -> None:
    definitions = _Request.model_json_schema()["$defs"]
    assert definitions["ModelConfig"]["description"].startswith("Which model a node calls and how.")
    assert definitions["NetworkConfig"]["description"].startswith("Settings of a whole network")


def test_a_config_can_be_weakly_referenced() -> None:
    config = ModelConfig(model_name="m")
    assert weakref.ref(config)() is config


def test_a_config_survives_pickling() -> None:
    config = ModelConfig(model_name="m", api_key="sk-pickled", fallbacks=(ModelConfig(model_name="f"),))  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(config)) == config


def test_threads_making_the_first_configs_at_once_share_one_checker() -> None:
    # A fresh interpreter, so that no checker is built yet: eight threads make their first NetworkConfig (whose
    # checker builds LayerConfig's and Budget's too) together; each gets its config checked, none an error.
    script = textwrap.dedent(
        """
        import threading
        from nons import Budget, LayerConfig, NetworkConfig
        from nons.base import checked
        made, failed = [], []
        start = threading.Barrier(8)
        def make(i):
            start.wait()
            try:
                made.append(NetworkConfig(name=f"n{i}", default_layer_config=LayerConfig(max_retries=i),
                                          budgets=[Budget(usd=i + 1)]))
                NetworkConfig(max_input_chars=0)
            except Exception as error:
                failed.append(type(error).__name__)
        threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(len(made), sorted(set(failed)), len(checked._checkers), len(checked._building))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["8", "['ValidationError']", "4", "0"]


def test_a_first_config_and_an_applications_model_built_at_once_do_not_deadlock() -> None:
    # Thread A makes the first ModelConfig (its checker is built, slowly here), thread B validates the first
    # request of an application's model that has a ModelConfig field (pydantic builds it under its own lock,
    # and needs ModelConfig's checker). NoN's checker build holds no lock of its own while pydantic builds.
    script = textwrap.dedent(
        """
        import sys, threading, time
        from pydantic import BaseModel, ConfigDict
        import nons.base.checked as checked
        from nons import ModelConfig

        class Request(BaseModel):
            model_config = ConfigDict(defer_build=True)
            model: ModelConfig

        names = checked._pydantic_names
        def slow_names():
            time.sleep(0.3)
            return names()
        checked._pydantic_names = slow_names
        done = []
        def first_config():
            done.append(ModelConfig(temperature=0.1))
        def first_request():
            time.sleep(0.1)
            done.append(Request(model={"model_name": "x"}))
        threads = [threading.Thread(target=f, daemon=True) for f in (first_config, first_request)]
        for t in threads: t.start()
        for t in threads: t.join(10)
        print(len(done))
        sys.stdout.flush()
        import os; os._exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["2"], done.stderr


def test_a_pre_release_of_pydantic_is_read_by_its_major_and_minor_numbers() -> None:
    script = (
        "import pydantic; pydantic.VERSION = '3.0b1'\n"
        "from nons import ModelConfig\n"
        "print(ModelConfig(model_name='x').model_name)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["x"]
