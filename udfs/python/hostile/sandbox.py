"""Test-only: Python functions that reach for what the sandbox denies, or run away; and one that
uses the standard library the sandbox allows."""

import hashlib
import socket
import statistics
import urllib.parse

from weir_udf import scalar


@scalar
def connect(x: int) -> str:
    """Opens a TCP connection: the sandbox has no network."""
    with socket.create_connection(("example.com", 80), timeout=1):
        return "connected"


@scalar
def read_file(x: int) -> str:
    """Reads a host file: the sandbox has no filesystem."""
    with open("/etc/passwd") as f:
        return f.read()


@scalar
def lazy_import(x: int) -> int:
    """Imports, at run time, a module the component does not hold."""
    import tkinter  # noqa: F401

    return x


@scalar
def spin(x: int) -> int:
    """Never returns: stopped at the deadline."""
    while True:
        x += 1


@scalar
def hog(x: int) -> int:
    """Allocates without bound: stopped at the memory cap."""
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


@scalar
def double(x: int) -> int:
    return 2 * x


@scalar
def standard_library(x: int) -> str:
    """Top-level imports, and lazy ones from the preloaded set."""
    import base64
    import decimal

    return " ".join(
        [
            hashlib.sha256(b"weir").hexdigest()[:8],
            str(statistics.mean([1, 2, x])),
            urllib.parse.urlparse("https://x.org/p?q=1").netloc,
            base64.b64encode(b"hi").decode(),
            str(decimal.Decimal("1.10") + decimal.Decimal("2.205")),
        ]
    )
