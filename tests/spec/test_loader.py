"""Loading spec files: every problem names the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nons.core.types import ConfigurationError, ErrorPolicy, ModelProvider
from nons.spec import SpecError, SpecProblem, load_spec, loads_spec
from nons.spec.loader import MAX_SPEC_VALUES


def _problems(text: str, source: str = "nets.yaml") -> list[SpecProblem]:
    with pytest.raises(SpecError) as raised:
        loads_spec(textwrap.dedent(text), source)
    return raised.value.problems


def _one(text: str) -> SpecProblem:
    problems = _problems(text)
    assert len(problems) == 1, problems
    return problems[0]


def test_a_valid_file_builds_its_networks(tmp_path: Path) -> None:
    path = tmp_path / "nets.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            models:
              fast: {model: mock/gpt-4o-mini, temperature: 0.2}
            networks:
              best-of-3:
                description: three and a vote
                timeout_seconds: 30
                layers: ["3 x generate@fast", pack_candidates, majority]
            """
        ),
        encoding="utf-8",
    )
    spec = load_spec(path)
    assert list(spec.networks) == ["best-of-3"]
    network = spec.networks["best-of-3"]
    assert network.name == "best-of-3" and network.config.timeout_seconds == 30
    assert [layer.width for layer in network.layers] == [3, 1, 1]
    node = network.layers[0].nodes[0]
    assert node.model_config.provider is ModelProvider.MOCK and node.model_config.temperature == 0.2
    assert len({n.id for n in network.layers[0].nodes}) == 3, "clones are independent nodes"
    assert spec.file.networks["best-of-3"].description == "three and a vote"


def test_a_spec_error_is_a_configuration_error_listing_every_problem() -> None:
    problems = _problems(
        """\
        networks:
          a:
            layers: [generat]
          b:
            layers: ["generate@nope"]
        """
    )
    assert [(p.line, p.field) for p in problems] == [(3, "networks.a.layers[0]"), (5, "networks.b.layers[0]")]
    assert issubclass(SpecError, ConfigurationError)
    text = str(SpecError(problems))
    assert "2 problems" in text and "nets.yaml:3:" in text and "nets.yaml:5:" in text


def test_a_network_with_a_schema_problem_still_has_its_other_layers_checked() -> None:
    # The unknown operator of layer 0 was reported only once the unknown key of layer 1 was fixed.
    problems = _problems(
        """\
        networks:
          a:
            layers:
              - generat
              - operator: generate
                max_retry: 3
              - operator: classify
                params: {categories: []}
        """
    )
    assert [(p.line, p.field) for p in problems] == [
        (4, "networks.a.layers[0]"), (6, "networks.a.layers[1].max_retry"), (8, "networks.a.layers[2].params"),
    ]  # fmt: skip


def test_a_network_with_a_schema_problem_still_has_its_own_settings_checked() -> None:
    # A misspelt network key (and a bad network setting) was reported only once the layers were fixed.
    problems = _problems(
        """\
        networks:
          a:
            layrs: [generate]
            timeout_seconds: -1
          b:
            layers: [generat]
            descripton: two typos
        """
    )
    assert [(p.line, p.field) for p in problems] == [
        (2, "networks.a"), (3, "networks.a.layrs"), (4, "networks.a.timeout_seconds"),
        (6, "networks.b.layers[0]"), (7, "networks.b.descripton"),
    ]  # fmt: skip
    assert problems[0].message == "layers: Field required"
    assert problems[1].message.startswith("unknown key")


def test_yaml_syntax_errors_name_the_line() -> None:
    problem = _one("networks:\n  a:\n    layers: [generate,\n")
    assert problem.file == "nets.yaml" and problem.line == 4 and problem.message.startswith("YAML:")


def test_duplicate_keys_are_refused_not_silently_overwritten() -> None:
    problem = _one("networks:\n  a:\n    layers: [generate]\n  a:\n    layers: [condense]\n")
    assert problem.line == 4 and "duplicate key" in problem.message


def test_an_empty_file_says_what_is_needed() -> None:
    assert "networks" in _one("# nothing yet\n").message


def test_a_missing_file_is_one_problem_without_a_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as raised:
        load_spec(tmp_path / "absent.yaml")
    (problem,) = raised.value.problems
    assert problem.line is None and problem.message == "no such file" and problem.file.endswith("absent.yaml")


def test_unknown_keys_point_at_the_key() -> None:
    problem = _one(
        """\
        networks:
          a:
            layers:
              - operator: generate
                modle: mock/gpt-4o-mini
        """
    )
    assert (problem.line, problem.column, problem.field) == (5, 9, "networks.a.layers[0].modle")
    assert "unknown key" in problem.message


def test_engine_values_are_checked_by_the_engine_types_at_the_field() -> None:
    problems = _problems(
        """\
        networks:
          a:
            timeout_seconds: -1
            layers:
              - operator: generate
                model: {model: mock/gpt-4o-mini, temperature: 5}
              - nodes: [condense]
                error_policy: sometimes
                max_retry: 2
        """
    )
    found = {(p.line, p.field): p.message for p in problems}
    assert "greater than 0" in found[(3, "networks.a.timeout_seconds")]
    assert "less than or equal to 2" in found[(6, "networks.a.layers[0].model.temperature")]
    assert "retry_with_backoff" in found[(8, "networks.a.layers[1].error_policy")]
    assert "unknown key" in found[(9, "networks.a.layers[1].max_retry")]


@pytest.mark.parametrize(
    ("layer", "says"),
    [
        ('"0 x generate"', "must be 1 or more"),
        ('"5 x generat"', "unknown operator 'generat'"),
        ('"generate@opneai/gpt-4o"', "unknown provider 'opneai'"),
        ('"generate@nope"', "unknown model 'nope'"),
    ],
)
def test_shorthand_problems_point_at_the_string(layer: str, says: str) -> None:
    problem = _one(f"networks:\n  a:\n    layers:\n      - {layer}\n")
    assert (problem.line, problem.field) == (4, "networks.a.layers[0]")
    assert says in problem.message


def test_operator_parameters_are_checked_by_the_operator() -> None:
    problem = _one(
        """\
        networks:
          a:
            layers:
              - operator: classify
                params: {categoris: [x, y]}
        """
    )
    assert (problem.line, problem.field) == (5, "networks.a.layers[0].params")
    assert "no parameter(s) categoris" in problem.message and "categories" in problem.message


def test_api_keys_do_not_belong_in_a_spec() -> None:
    problem = _one(
        """\
        models:
          m: {model: openai/gpt-4o-mini, api_key: sk-not-a-real-key}
        networks:
          a: {layers: ["generate@m"]}
        """
    )
    assert (problem.line, problem.field) == (2, "models.m.api_key")
    assert "OPENAI_API_KEY" in problem.message and "sk-not-a-real-key" not in str(problem)


def test_a_key_given_as_an_extra_parameter_does_not_belong_in_a_spec_either() -> None:
    problem = _one(
        """\
        models:
          m: {model: openai/gpt-4o-mini, extra_params: {api_key: sk-not-a-real-key}}
        networks:
          a: {layers: ["generate@m"]}
        """
    )
    assert problem.field == "models.m.extra_params.api_key"
    assert "OPENAI_API_KEY" in problem.message and "sk-not-a-real-key" not in str(problem)


@pytest.mark.parametrize("named", ["model_name: gpt-4o-mini", "provider: anthropic"])
def test_a_model_is_named_once_by_model_not_again_by_its_fields(named: str) -> None:
    # Before, model_name (or provider) silently replaced what model: said: this node called gpt-4o-mini.
    problem = _one(
        f"""\
        models:
          m: {{model: openai/gpt-4o, {named}}}
        networks:
          a: {{layers: ["generate@m"]}}
        """
    )
    assert (problem.line, problem.field) == (2, f"models.m.{named.split(':')[0]}")
    assert "given by model:" in problem.message


def test_model_aliases_that_refer_to_each_other_in_a_loop_are_refused() -> None:
    problem = _one(
        """\
        models:
          a: {model: b}
          b: {model: a}
        networks:
          n: {layers: ["generate@a"]}
        """
    )
    assert "loop" in problem.message and "a -> b -> a" in problem.message


def test_network_names_must_fit_in_a_url_and_versions_must_be_known() -> None:
    problems = _problems("version: 2\nnetworks:\n  'a b': {layers: [generate]}\n")
    assert [(p.line, p.field) for p in problems] == [(1, "version"), (3, "networks.a b")]


def test_reserved_network_keys_say_where_they_are_set() -> None:
    problem = _one("networks:\n  a:\n    name: other\n    layers: [generate]\n")
    assert (problem.line, problem.field) == (3, "networks.a.name") and "its key under networks:" in problem.message


def test_aliases_take_overrides_and_merge_extra_params() -> None:
    spec = loads_spec(
        textwrap.dedent(
            """\
            models:
              base: {model: mock/gpt-4o-mini, temperature: 0.5, extra_params: {mock_seed: 1, mock_latency_s: 0}}
            defaults:
              model: {model: base, temperature: 0.0, extra_params: {mock_seed: 9}}
              layer: {error_policy: retry_with_backoff, max_retries: 2}
            networks:
              n:
                defaults: {layer: {max_retries: 5}}
                layers: [generate]
            """
        )
    )
    network = spec.networks["n"]
    model = network.layers[0].nodes[0].model_config
    assert model.temperature == 0.0 and model.extra_params == {"mock_seed": 9, "mock_latency_s": 0}
    # A network's layer defaults override the file's key by key.
    assert network.layer_config is not None
    assert network.layer_config.error_policy is ErrorPolicy.RETRY_WITH_BACKOFF
    assert network.layer_config.max_retries == 5


def test_aliases_that_expand_past_the_limit_are_refused_at_once() -> None:
    # A few hundred bytes whose aliases refer to aliases eleven levels deep hold 9**12 items: expanding them hung
    # `nons check`, `nons run` and `nons serve`.
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    lines.append("networks: {n: {layers: [generate]}}")
    with pytest.raises(SpecError, match=f"more than {MAX_SPEC_VALUES:,} keys and list items"):
        loads_spec("\n".join(lines))


def test_an_alias_used_a_few_times_is_expanded_as_usual() -> None:
    spec = loads_spec(
        textwrap.dedent(
            """\
            models:
              m: &cheap {model: mock/gpt-4o-mini, temperature: 0.2}
              n: *cheap
            networks:
              a: {layers: ["generate@m", "generate@n"]}
            """
        )
    )
    assert [layer.nodes[0].model_config.temperature for layer in spec.networks["a"].layers] == [0.2, 0.2]


def test_a_yaml_merge_key_is_applied() -> None:
    # `<<: *anchor` raised a KeyError from the YAML reader's position table: merged keys have no place of their own.
    spec = loads_spec(
        textwrap.dedent(
            """\
            models:
              fast: &m {model: mock/gpt-4o-mini, temperature: 0.5}
              slow:
                <<: *m
                temperature: 1
            networks:
              a: {layers: ["generate@slow"]}
            """
        )
    )
    model = spec.networks["a"].layers[0].nodes[0].model_config
    assert (model.model_name, model.temperature) == ("gpt-4o-mini", 1.0)


def test_a_credential_nested_in_extra_params_does_not_belong_in_a_spec_either() -> None:
    # extra_query: {api-key: ...} sends a key as surely as api_key does; it passed, and `nons check` printed it.
    problem = _one(
        """\
        networks:
          a:
            layers:
              - operator: generate
                model: {model: openai/gpt-4o-mini, extra_params: {extra_query: {api-key: sk-nested-secret-1}}}
        """
    )
    assert problem.field == "networks.a.layers[0].model.extra_params.extra_query.api-key"
    assert "looks like a credential" in problem.message and "sk-nested-secret-1" not in str(problem)


def test_a_duplicate_key_is_named_without_its_values() -> None:
    # The YAML reader's message quoted both values: an Authorization header written twice showed both tokens.
    problem = _one(
        """\
        networks:
          a:
            layers:
              - operator: generate
                model:
                  model: openai/gpt-4o-mini
                  extra_params:
                    extra_headers: {Authorization: "Bearer sk-old-secret-1", Authorization: "Bearer sk-new-secret-2"}
        """
    )
    assert 'found duplicate key "Authorization"' in problem.message
    assert "secret" not in str(problem)


def test_a_file_that_is_not_regular_is_refused_rather_than_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "nets.yaml"
    os.mkfifo(fifo)  # reading it waited for a writer for ever
    with pytest.raises(SpecError, match="not a regular file"):
        load_spec(fifo)


def test_a_credential_in_a_list_in_extra_params_does_not_belong_in_a_spec_either() -> None:
    # Keys were looked for in mappings only: a plugin list's api_key passed.
    problem = _one(
        """\
        networks:
          a:
            layers:
              - operator: generate
                model: {model: openai/gpt-4o-mini, extra_params: {extra_body: {plugins: [{api_key: sk-in-a-list-1}]}}}
        """
    )
    assert problem.field == "networks.a.layers[0].model.extra_params.extra_body.plugins[0].api_key"
    assert "sk-in-a-list-1" not in str(problem)


@pytest.mark.parametrize(
    "key", ["priority", "fallbacks", "additional_prompt_context", "model_config", "cache", "operator_name", "self"]
)
def test_a_nodes_own_keyword_under_params_is_named_not_a_traceback(key: str) -> None:
    # Node(..., priority=..., **params) raised a TypeError: a traceback from `nons check` and `nons serve`.
    problem = _one(
        f"""\
        networks:
          a:
            layers:
              - {{operator: generate, params: {{{key}: 1}}}}
        """
    )
    assert problem.field.startswith("networks.a.layers[0].params")
    assert "is not an operator parameter" in problem.message or "the node's own arguments" in problem.message


def test_every_entry_of_models_is_checked_whether_used_or_not() -> None:
    # Only the models a node used were built: an unused one's api_key, unknown provider or bad value passed.
    problems = _problems(
        """\
        models:
          leaked: {model: openai/gpt-4o-mini, api_key: sk-unused-model-1}
          odd: {model: nosuch/x}
          hot: {model: openai/gpt-4o-mini, temperature: 9}
        networks:
          a: {layers: [generate]}
        """
    )
    assert [p.field for p in problems] == ["models.leaked.api_key", "models.odd.model", "models.hot.temperature"]
    assert "sk-unused-model-1" not in str(problems)


def test_a_model_used_by_several_nodes_and_networks_has_its_problem_said_once() -> None:
    # It was said once per use, and counted so: "3 problems" for one.
    problems = _problems(
        """\
        defaults: {model: m}
        models:
          m: {model: openai/gpt-4o-mini, temperature: 7}
        networks:
          a: {layers: ["3 x generate@m", generate]}
          b: {layers: [generate]}
        """
    )
    assert [p.field for p in problems] == ["models.m.temperature"]


def test_a_one_node_layer_mapping_takes_the_layers_own_keys_beside_the_nodes() -> None:
    # error_policy beside operator was refused as "unknown key (not part of the spec format)".
    spec = loads_spec(
        textwrap.dedent(
            """\
            networks:
              a:
                layers:
                  - {operator: generate, context: be brief, error_policy: skip_and_continue, max_retries: 1}
            """
        )
    )
    (layer,) = spec.networks["a"].layers
    assert layer.config is not None and layer.config.error_policy is ErrorPolicy.SKIP_AND_CONTINUE
    assert layer.config.max_retries == 1 and layer.nodes[0].additional_prompt_context == "be brief"
    problem = _one("networks:\n  a:\n    layers:\n      - {operator: generate, contxt: x}\n")
    assert problem.field == "networks.a.layers[0].contxt" and problem.line == 4


@pytest.mark.parametrize(
    ("key", "says"),
    [("~", "the name null is read as null"), ("1.5", "the name 1.5 is read as a number"),
     ("true", "the name true is read as a boolean"), ("2024", "the name 2024 is read as a number")],
)  # fmt: skip
def test_a_name_yaml_reads_as_something_else_than_text_is_said_at_its_line(key: str, says: str) -> None:
    # It was "networks: None.[key]: Input should be a valid string", at line 1.
    problem = _one(f"networks:\n  ok: {{layers: [generate]}}\n  {key}: {{layers: [generate]}}\n")
    assert problem.line == 3 and says in problem.message and "quote it" in problem.message


def test_a_bad_model_or_network_name_is_said_at_its_line_as_a_name() -> None:
    # They were said at line 1, the model's as a model reference ("write 'provider/model'").
    problems = _problems("models:\n  ok: mock/x\n  my model: mock/x\nnetworks:\n  bad name: {layers: [generate]}\n")
    assert [(p.line, p.message.split(" must")[0]) for p in problems] == [
        (3, "model name 'my model'"), (5, "network name 'bad name'")
    ]


def test_a_model_name_with_a_final_newline_is_refused() -> None:
    # "$" matched before a final newline: a quoted "fast\n" passed as the name of a model.
    problem = _one('models:\n  "fast\\n": mock/x\nnetworks:\n  a: {layers: [generate]}\n')
    assert problem.line == 2 and "model name 'fast\\n' must start with" in problem.message
