"""URIs and local paths, read without `urllib.parse` (which drops the tab and newline
characters a file name may legally contain)."""

from __future__ import annotations


def uri_scheme(uri: str) -> str:
    """The scheme of a URI ('' for a plain path), read without `urlparse`, which drops tab
    and newline characters a file name may legally contain."""
    head, sep, _ = uri.partition(":")
    if not sep or "/" in head or not head[:1].isalpha() or len(head) == 1:
        return ""
    return head.lower() if all(c.isalnum() or c in "+.-" for c in head) else ""


def is_local(uri: str) -> bool:
    """True for plain paths and file: URIs."""
    return uri_scheme(uri) in ("", "file")


def local_path(uri: str) -> str:
    """The filesystem path of a plain path or a file: URI (`file:/p`, `file:///p`); every
    other character of the name is kept as it is."""
    if uri_scheme(uri) != "file":
        return uri
    rest = uri[len("file:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        rest = rest[rest.index("/"):] if "/" in rest else "/"
    return rest
