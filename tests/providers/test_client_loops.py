"""Event loops closed without ``shutdown_asyncgens()`` leave no SDK client behind to complain later: a dead loop's
clients are dropped quietly (no "Task exception was never retrieved ... Event loop is closed" tracebacks), and
every answer is still right."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import asyncio, gc, os
    from nons.core.network import NoN
    from nons.core.node import Node
    from nons.core.types import ModelConfig, ModelProvider
    from nons.testing import ProviderEmulator, Reply

    os.environ.update(OPENAI_API_KEY="sk-loops-0123456789", ANTHROPIC_API_KEY="sk-ant-loops-0123456789",
                      GOOGLE_API_KEY="AIza-loops-0123456789")
    with ProviderEmulator(default=Reply(text="ok")) as emu:
        models = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6"), ("google", "gemini-2.0-flash")]
        nodes = [Node("generate", ModelConfig(provider=ModelProvider(p), model_name=m, base_url=emu.base_url_for(p)))
                 for p, m in models]
        network = NoN.from_operators([nodes])
        answers = []
        for _ in range(30):
            loop = asyncio.new_event_loop()  # closed below without loop.shutdown_asyncgens()
            answers.append(loop.run_until_complete(network.forward("hi")))
            loop.close()
        gc.collect()
        loop = asyncio.new_event_loop()  # a live loop, where a dropped client's __del__ would schedule its close
        loop.run_until_complete(network.forward("hi"))
        gc.collect()
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    print("ANSWERS", sum(a == ["ok", "ok", "ok"] for a in answers))
    """
)


def test_loops_closed_without_shutdown_leave_no_tracebacks() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ANSWERS 30" in done.stdout
    assert "Event loop is closed" not in done.stderr, done.stderr[-3000:]
    assert "Task exception was never retrieved" not in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
