"""The real-model tier's fixtures, defined in :mod:`llama_harness`."""

from llama_harness import llama_model, llama_server, span_exporter, spans

__all__ = ["llama_model", "llama_server", "span_exporter", "spans"]
