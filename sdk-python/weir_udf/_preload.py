"""Standard-library modules imported when the component is built, so that a function may also
import them lazily (inside its body) at run time.

componentize-py snapshots the interpreter after the app is imported; only modules loaded by then
are inside the component, and the sandbox has no filesystem to load others from. Imports at the
top of the author's module are always bundled; this list covers the common lazy ones, including
the codecs that `str.encode` and `bytes.decode` load on first use.
"""

import importlib

MODULES = (
    "base64",
    "binascii",
    "bisect",
    "calendar",
    "collections",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "encodings.ascii",
    "encodings.cp1252",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.punycode",
    "encodings.utf_16",
    "encodings.utf_32",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "ipaddress",
    "itertools",
    "json",
    "math",
    "operator",
    "random",
    "re",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "unicodedata",
    "urllib.parse",
    "uuid",
    "zlib",
)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except ImportError:  # not built into this interpreter; an import of it fails clearly later
        pass
