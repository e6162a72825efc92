"""Log lines carry task context; secrets never reach them."""

from __future__ import annotations

import io
import json
import logging

from tgfleet.platform.logconfig import configure_logging, log_context
from tgfleet.platform.settings import Settings, load_settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


def capture(settings: Settings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    return stream


def test_plain_lines_carry_context_and_hide_secrets(service_env: dict[str, str]) -> None:
    settings = load_settings(**service_env)
    stream = capture(settings)
    secret = settings.secret_key.get_secret_value()
    with log_context(task_id="t-1", queue="sends", bot_id=42):
        logging.getLogger("tgfleet.test").info("token %s key %s", TOKEN, secret)
    line = stream.getvalue()
    assert "task_id=t-1" in line and "queue=sends" in line and "bot_id=42" in line
    assert TOKEN not in line and secret not in line
    assert line.count("[redacted]") == 2


def test_json_lines_are_parseable_with_context(service_env: dict[str, str]) -> None:
    stream = capture(load_settings(**{**service_env, "TGFLEET_LOG_FORMAT": "json"}))
    with log_context(task_id="t-2", bot_id=7):
        try:
            raise RuntimeError(f"login failed for {TOKEN}")
        except RuntimeError:
            logging.getLogger("tgfleet.test").exception("boom")
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["task_id"] == "t-2" and record["bot_id"] == 7 and record["msg"] == "boom"
    assert TOKEN not in stream.getvalue() and "[redacted]" in record["exc"]


def teardown_function() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
