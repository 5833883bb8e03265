"""The networks the image serves by default (``deploy/networks.yaml``) do what their descriptions say."""

from __future__ import annotations

from pathlib import Path

from nons.operators.results import Classification
from nons.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
REQUEST = "Where is my order #1234? I paid two weeks ago and it has not shipped."

async def test_triage_classifies_the_request_and_answers_the_request_itself() -> None:
    # It answered the category's name: a generate layer after the classify got "task" as its whole prompt.
    network = load_spec(ROOT / "deploy" / "networks.yaml").networks["triage"]
    category, answer = (await network.run(REQUEST)).output
    assert isinstance(category, Classification) and category.category in {"question", "task", "complaint"}
    # The simulated model answers about the text it was sent.
    assert isinstance(answer, str) and "order #1234" in answer
