"""Debug logs never export a key: every record the log bridge exports (the SDKs' DEBUG records included) is
redacted by the same rule as every other signal, message, arguments, exception and attributes alike."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from nons.base.redaction import RUN_CHARS

KEY = "sk-LEAKCHECK-debuglog-0123456789abcdef"

CHILD = textwrap.dedent(
    """
    import logging
    from nons.base.settings import get_settings
    from nons.observability.setup import configure_telemetry, shutdown_telemetry

    logging.getLogger().setLevel(logging.DEBUG)
    get_settings()  # the key is read (stripped) where NoN reads it
    configure_telemetry()
    key = {key!r}
    sdk = logging.getLogger("openai._base_client")
    sdk.debug("Request options: %s", {{"headers": {{"Authorization": "Bearer " + key + "\\\\n"}}}})
    sdk.debug("HTTP Request failed: Illegal header value b'Bearer %s\\\\n'", key)
    try:
        raise ValueError("Illegal header value b'Bearer " + key + "'")
    except ValueError:
        logging.getLogger("httpx2").debug("Encountered Exception", exc_info=True)
    logging.getLogger("app").warning("masked %s...%s", key[:7], key[-4:], extra={{"auth": key}})
    logging.getLogger("nons.test").info("nons record " + key)
    shutdown_telemetry()
    print("CHILD-DONE")
    """
)


def test_no_exported_log_record_holds_the_key() -> None:
    # The root logger is bridged (the standard switch), so that the SDKs' and the application's records are
    # exported too, not only NoN's own.
    env = {"OPENAI_API_KEY": KEY + "\n", "OTEL_LOGS_EXPORTER": "console", "OTEL_TRACES_EXPORTER": "none",
           "OTEL_METRICS_EXPORTER": "none", "PATH": "/usr/bin:/bin",
           "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(key=KEY)], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CHILD-DONE" in done.stdout
    exported = done.stdout
    assert exported.count('"body"') >= 5  # the console exporter really exported the records
    assert "[REDACTED]" in exported
    runs = [KEY[i : i + RUN_CHARS] for i in range(len(KEY) - RUN_CHARS + 1) if KEY[i : i + RUN_CHARS] in exported]
    assert runs == [], exported[:3000]
