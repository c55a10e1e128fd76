"""scitq v1 argument forms that the v1 compatibility layer (`scitq.lib`, `scitq.fetch`,
`scitq.workflow.Workflow`) accepts and the native API does not.

scitq v1 took several URIs in one string separated by white space
(``input='s3://a/1.fq s3://a/2.fq'``) or a list of such strings; the native API takes
one URI per list item and refuses white space inside a URI. `split_uris` turns the v1
forms into the native one.
"""

from __future__ import annotations

from collections.abc import Iterable

from scitq.errors import InvalidArgument


def split_uris(value: object, what: str = "input") -> list[str]:
    """The URIs of a v1 ``input``/``resource`` value, one per item.

    Args:
        value: None, a string of URIs separated by white space, or an iterable of such
            strings (or of objects whose ``str()`` is one).
        what: the argument's name, for the error message.

    Returns:
        The URIs, in order, without empty items.

    Raises:
        InvalidArgument: ``value`` is neither a string nor an iterable of strings.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, bytes) or not isinstance(value, Iterable):
        if hasattr(value, "__fspath__"):  # a path object
            return str(value).split()
        raise InvalidArgument(
            f"{what} takes a URI string (several separated by spaces) or a list of URIs, "
            f"not {type(value).__name__}"
        )
    uris: list[str] = []
    for item in value:
        if item is None:
            continue
        if isinstance(item, bytes) or (isinstance(item, Iterable) and not isinstance(item, str)):
            raise InvalidArgument(f"{what} items must be URIs, not {type(item).__name__}")
        uris.extend(str(item).split())
    return uris
