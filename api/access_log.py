"""The access log keeps each request's client, method, path and status, never its query string:
a QIDO matching key or a filter in a URL can be a patient's name or ID (docs/operations.md)."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"
PATH_ARG = 2  # uvicorn logs (client, method, path with query, http version, status)


class WithoutQueryStrings(logging.Filter):
    """Cuts the query string off the path of uvicorn's access log records before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > PATH_ARG and isinstance(args[PATH_ARG], str):
            record.args = (*args[:PATH_ARG], args[PATH_ARG].split("?", 1)[0], *args[PATH_ARG + 1 :])
        return True


def drop_query_strings() -> None:
    """Install the filter on uvicorn's access logger (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, WithoutQueryStrings) for existing in logger.filters):
        logger.addFilter(WithoutQueryStrings())
