"""Logging for the entry points (``python app.py``, ``python -m annotation``): one line per record with a
timestamp, at the level of a ``--log-level`` flag. Library modules only log (``logging.getLogger(__name__)``);
only these entry points configure where it goes.
"""

from __future__ import annotations

import argparse
import logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# chatty at INFO: alembic's "Context impl SQLiteImpl." on every start, httpx's line per HTTP request of gradio
QUIET_BELOW_DEBUG = ("alembic", "httpx")


def add_log_level_argument(parser: argparse.ArgumentParser, default: str = "INFO") -> None:
    parser.add_argument("--log-level", default=default, choices=LOG_LEVELS, type=str.upper,
                        help=f"how much the log on stderr shows (default: {default})")


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records at ``level`` or above to stderr, with a timestamp."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    logging.getLogger().setLevel(level)  # also when something configured the root logger before us
    for name in QUIET_BELOW_DEBUG:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
