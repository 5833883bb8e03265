"""A caller's budget (``Budget(per="caller")``) counts the runs the service makes for that caller: the service
names the caller around each pass, so one caller spending its budget leaves the others theirs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nons import Budget, ModelConfig, ModelProvider, Node, NoN
from nons.core import budgets as budgets_module
from nons.core.budgets import configure_budgets
from nons.serve.app import create_app
from nons.serve.auth import TokenTable
from nons.serve.limits import CallerLimits

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"


@pytest.fixture
def _caller_budgets() -> Iterator[None]:
    saved = budgets_module._budgets
    configure_budgets(Budget(usd=3e-5, per="caller", name="per-caller"))
    yield
    budgets_module._budgets = saved


@pytest.mark.usefixtures("_caller_budgets")
async def test_each_caller_spends_from_its_own_budget() -> None:
    model = ModelConfig(provider=ModelProvider.MOCK, model_name="gemini-2.0-flash", max_tokens=50)
    app = create_app(
        {"answer": NoN.from_operators([Node("generate", model)])},
        tokens=TokenTable([("alice", ALICE), ("bob", BOB)]),
        limits=CallerLimits("1000/minute"),
        max_input_chars=10_000,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:

        async def run(token: str) -> httpx.Response:
            return await client.post(
                "/v1/networks/answer/run", json={"input": "Name a colour."},
                headers={"Authorization": f"Bearer {token}"},
            )

        statuses = [(await run(ALICE)).status_code for _ in range(6)]
        assert statuses[0] == 200 and statuses[-1] == 502  # alice's budget ran out
        refused = await run(ALICE)
        detail = refused.json()["detail"]
        assert "BudgetExceededError" in detail and "per-caller" in detail
        assert (await run(BOB)).status_code == 200  # bob has his own
