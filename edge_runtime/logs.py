"""Logging set-up: journald-friendly lines on stderr."""

from __future__ import annotations

import logging
import os
import sys

from edge_runtime.redact import mask_text

# sd-daemon(3) priority prefixes: journald stores them as the message priority
JOURNAL_PRIORITY = {logging.DEBUG: "<7>", logging.INFO: "<6>", logging.WARNING: "<4>",
                    logging.ERROR: "<3>", logging.CRITICAL: "<2>"}


class MaskingFormatter(logging.Formatter):
    """Masks credentials in URLs of every line, tracebacks included: a safety net behind
    the sources, which mask their own messages (edge_runtime/redact.py)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class JournalFormatter(MaskingFormatter):
    """No timestamp (journald adds one), priority prefix instead of a level name."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = JOURNAL_PRIORITY.get(record.levelno, "<6>")
        return prefix + super().format(record)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(MaskingFormatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
