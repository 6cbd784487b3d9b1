"""Log helpers that lean on the standard library (`json`, `re`): realistic Python UDFs with no
Rust twin."""

import json
import re
from typing import Optional

from weir_udf import scalar

_BROWSERS = [
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"(?:OPR|Opera)/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+).*Safari/")),
]
_BOTS = re.compile(r"bot|crawler|spider|curl/|wget/", re.IGNORECASE)


@scalar
def browser(user_agent: str) -> Optional[str]:
    """The browser family and major version of a User-Agent header, such as `Firefox 121`;
    `bot` for crawlers and command-line clients; None when nothing matches."""
    if _BOTS.search(user_agent):
        return "bot"
    for name, pattern in _BROWSERS:
        match = pattern.search(user_agent)
        if match:
            return f"{name} {match.group(1)}"
    return None


@scalar
def json_field(document: str, path: str) -> Optional[str]:
    """The value at a dotted `path` (`user.address.city`, `items.0.sku`) in a JSON document, as
    JSON text (strings unquoted); None when the path is absent. Malformed JSON is an error for
    that row."""
    value = json.loads(document)
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
