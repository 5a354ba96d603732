"""The log file never receives a password, even when a message or traceback carries one."""

from __future__ import annotations

import logging

from pgtide.core.infra import logs


def test_scrub_urls_and_keyword_strings() -> None:
    assert logs.scrub("postgresql://app:s3cret@db/x") == "postgresql://app:***@db/x"
    assert logs.scrub("host=db password='it s3cret' user=u") == "host=db password=*** user=u"
    assert logs.scrub("sslpassword=s3cret") == "sslpassword=***"
    assert logs.scrub("nothing secret here") == "nothing secret here"


def test_log_file_is_scrubbed_including_tracebacks() -> None:
    path = logs.configure()
    log = logging.getLogger("pgtide.test")
    log.warning("connecting to %s", "postgres://u:hunter2@h/db")
    try:
        raise RuntimeError("failed: host=h password=hunter2")
    except RuntimeError:
        log.exception("boom")
    for handler in logging.getLogger("pgtide").handlers:
        handler.flush()
    text = path.read_text()
    assert "boom" in text and "RuntimeError" in text and "postgres://u:***@h/db" in text
    assert "hunter2" not in text
