"""
JSON from clients, decoded with a bound on nesting depth: REST bodies (BoundedJSONParser)
and WebSocket frames (chats/consumers.py) share `loads`.

Python's decoder recurses once per nested array or object, so a 2 KB body of 1000 nested
lists ended in a RecursionError (a 500, or a WebSocket closed with 1011). The depth is
measured first, by a linear scan that does not recurse; nothing in our API nests deeper
than 4 levels, so `MAX_JSON_DEPTH` (32) leaves room.
"""
import codecs
import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant

# What the scan stops at: brackets, and the quote that starts a string (whose brackets do not count).
_STRUCTURE = re.compile(r'[\[\]{}"]')
# The rest of a string after its opening quote, escapes included (possessive: no backtracking).
_STRING_REST = re.compile(r'(?:[^"\\]++|\\.)*+"', re.DOTALL)


def nested_deeper_than(text: str, limit: int) -> bool:
    """Whether JSON text opens more than `limit` arrays/objects inside each other (time linear in its length)."""
    depth = 0
    position = 0
    while match := _STRUCTURE.search(text, position):
        char = match.group()
        position = match.end()
        if char == '"':
            string_end = _STRING_REST.match(text, position)
            if string_end is None:
                return False  # unterminated string: the decoder fails there, no deeper
            position = string_end.end()
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
            if depth < 0:
                return False  # unbalanced: the decoder fails there, no deeper
    return False


def loads(text: str | bytes, **kwargs):
    """json.loads with a bound on nesting; every refusal is a ValueError, as for malformed JSON."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode()  # UnicodeDecodeError is a ValueError too
    limit = settings.MAX_JSON_DEPTH
    if nested_deeper_than(text, limit):
        raise ValueError(f"nested deeper than {limit} levels")
    return json.loads(text, **kwargs)


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser (strict: no NaN or Infinity) with the nesting bound: 400 `parse_error`."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            text = codecs.getreader(get_encoding(parser_context or {}))(stream).read()
            return loads(text, parse_constant=strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}")
