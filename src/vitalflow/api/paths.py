"""Which paths a form or the API may name: only inside the app's roots.

A local path is taken relative to the first local root when it is relative, resolved
(`Path.resolve`: symlinks followed, so a link cannot point out of a root) and must then lie
inside one of the local roots. A path naming ``..`` is refused outright, before resolving. An
``s3://`` URI is allowed only below a root that is an ``s3://`` prefix, and never with user info
(credentials) in it. Every refusal is a `PathRefused` naming the value.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from vitalflow.errors import VitalflowError


class PathRefused(VitalflowError):
    """A path outside the app's roots (or otherwise not acceptable)."""


def local_roots(roots: tuple[str, ...]) -> list[Path]:
    return [Path(r) for r in roots if "://" not in r]


def s3_roots(roots: tuple[str, ...]) -> list[str]:
    return [r for r in roots if r.startswith("s3://")]


def check_path(value: str, roots: tuple[str, ...], *, must_exist: bool = False, allow_s3: bool = True) -> str:
    """``value`` as the absolute path (or s3:// URI) jobs get, or `PathRefused`.

    >>> import tempfile; root = tempfile.mkdtemp()
    >>> check_path("data/x", (root,)) == f"{root}/data/x"
    True
    >>> check_path("../etc/passwd", (root,))
    Traceback (most recent call last):
    ...
    vitalflow.api.paths.PathRefused: ../etc/passwd: '..' is not allowed in a path
    >>> check_path("/etc/passwd", (root,))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    vitalflow.api.paths.PathRefused: /etc/passwd: outside the app's roots (...)
    """
    text = str(value).strip()
    if not text:
        raise PathRefused("an empty path")
    if "\x00" in text:
        raise PathRefused(f"{text!r}: a NUL character in a path")
    if "://" in text:
        return _check_uri(text, roots, allow_s3)
    if ".." in PurePosixPath(text).parts:
        raise PathRefused(f"{text}: '..' is not allowed in a path")
    locals_ = local_roots(roots)
    if not locals_:
        raise PathRefused(f"{text}: local paths are not allowed (the app's roots are s3:// prefixes)")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = locals_[0] / path
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in locals_):
        raise PathRefused(f"{text}: outside the app's roots ({', '.join(map(str, locals_))})")
    if must_exist and not resolved.exists():
        raise PathRefused(f"{text}: no such file or directory")
    return str(resolved)


def _check_uri(text: str, roots: tuple[str, ...], allow_s3: bool) -> str:
    scheme, _, rest = text.partition("://")
    if scheme != "s3":
        raise PathRefused(f"{scheme}://...: only local paths and s3:// URIs are accepted")
    bucket = rest.split("/", 1)[0]
    if "@" in bucket or ":" in bucket:
        raise PathRefused("s3://...: credentials in a URI are not accepted (use the AWS environment)")
    if any(part in ("..", ".") for part in rest.split("/")):
        raise PathRefused(f"{text}: '..' is not allowed in a path")
    prefixes = s3_roots(roots)
    if not allow_s3 or not prefixes:
        raise PathRefused(f"{text}: s3:// URIs are allowed only when a root is an s3:// prefix (--root s3://...)")
    if not any((text.rstrip("/") + "/").startswith(p) for p in prefixes):
        raise PathRefused(f"{text}: outside the app's roots ({', '.join(prefixes)})")
    return text
