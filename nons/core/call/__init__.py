"""The one LLM call path: the pass's shared context, one attempt, and the call (fallbacks x retries) around it.

- :mod:`~nons.core.call.context`: :class:`PassContext` (what a pass's calls share), :class:`CallSite` (who
  calls) and :class:`CallState` (one call in progress);
- :mod:`~nons.core.call.attempt`: one try (permit, timeout budget, provider call, release);
- :mod:`~nons.core.call.call`: :func:`call_llm`, the fallback chain with retries around the attempt;
- :mod:`~nons.core.call.labels`: :class:`~nons.core.call.labels.CallLabels`, a call's span name and attributes
  and metric labels for one model, built and cleaned once per call site;
- :mod:`~nons.core.call.telemetry`: what a call records (its span, events and metrics).
"""

from __future__ import annotations

from nons.core.call.call import call_llm
from nons.core.call.context import CallSite, CallState, PassContext

__all__ = ["CallSite", "CallState", "PassContext", "call_llm"]
