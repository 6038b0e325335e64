"""JSON in, with a bound on nesting: Python's decoder recurses, and a body of 100 000 ``[``
would otherwise end in a RecursionError (a 500) instead of a 400."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

#: Deeper than any message, batch or template context needs; shallow enough that nothing that
#: walks the data afterwards (validation, template rendering) can run out of stack.
MAX_DEPTH = 32


def _too_deep(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
        else:
            if not _too_deep(data, MAX_DEPTH):
                return data
        raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")
