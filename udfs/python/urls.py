"""URL helpers, the Python twin of udfs/rust/urls: `url_domain`, table function `url_segments`."""

import re
from collections.abc import Iterator
from typing import Optional

from weir_udf import Int32, scalar, table

_PATH_START = re.compile(r"[/?#]")
_QUERY_START = re.compile(r"[?#]")


@scalar
def url_domain(url: str) -> Optional[str]:
    """The part of `url` after the scheme and before the path, port and credentials stripped;
    None when `url` has no `scheme://`."""
    _, sep, rest = url.partition("://")
    if not sep:
        return None
    authority = _PATH_START.split(rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2].partition(":")[0]
    return host or None


@table(columns=["position", "segment"])
def url_segments(url: str) -> Iterator[tuple[Int32, str]]:
    """One row per non-empty segment of the URL's path, numbered from 1."""
    # Query and fragment first: a '/' inside them is not part of the path.
    url = _QUERY_START.split(url, maxsplit=1)[0]
    _, sep, rest = url.partition("://")
    if sep:
        slash = rest.find("/")
        path = rest[slash:] if slash >= 0 else ""
    else:
        path = url
    segments = [s for s in path.split("/") if s]
    yield from zip(range(1, len(segments) + 1), segments)
