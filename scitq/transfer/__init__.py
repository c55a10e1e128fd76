"""Data staging: move inputs, resources and outputs between URIs and the local disk.

* `parse_uri` / `Uri` (`scitq.transfer.uri`): the v1 grammar
  ``scheme[@option...]://path[|action...]``.
* `validate_uri`: what the CLI and the Python API call at submit time.
* `Transport`, `register_scheme`, `transport_for` (`scitq.transfer.registry`): one
  transport per scheme (``file``, ``s3``, ``ftp``, ``http``/``https``).
* `stage_inputs`, `upload_outputs` (`scitq.transfer.staging`) and `ResourceCache`
  (`scitq.transfer.cache`): what the agent calls, through ``asyncio.to_thread``.

Nothing here imports boto3 or ftputil until a transport of that scheme is needed.
"""

from __future__ import annotations

from typing import Literal

from scitq.errors import InvalidUri
from scitq.transfer.cache import ResourceCache
from scitq.transfer.registry import (
    Progress,
    RemoteEntry,
    Transport,
    check_uri,
    known_schemes,
    register_scheme,
    scheme_info,
    transport_for,
)
from scitq.transfer.staging import fetch, fetch_with_retries, stage_inputs, upload_outputs
from scitq.transfer.uri import Action, Uri, parse_uri

Role = Literal["input", "resource", "output"]

__all__ = [
    "Action",
    "Progress",
    "RemoteEntry",
    "ResourceCache",
    "Role",
    "Transport",
    "Uri",
    "fetch",
    "fetch_with_retries",
    "known_schemes",
    "parse_uri",
    "register_scheme",
    "stage_inputs",
    "transport_for",
    "upload_outputs",
    "validate_uri",
]


def validate_uri(text: str, role: Role = "input") -> Uri:
    """Parse ``text`` and check that it can serve as an input, a resource or an output.

    Checks the syntax, that the scheme is known, the scheme's own syntax rules (an S3
    URI names a bucket...), and for outputs that the scheme accepts uploads and that no
    action is given (actions apply to downloads).

    Args:
        text: the URI.
        role: ``input``, ``resource`` or ``output``.

    Returns:
        The parsed URI.

    Raises:
        InvalidUri: naming the URI (never a password) and what is wrong.
    """
    uri = parse_uri(text)
    check_uri(uri)
    if role == "output":
        if not scheme_info(uri).upload:
            uploadable = ", ".join(s for s in known_schemes() if _uploadable(s))
            raise InvalidUri(
                f"output {text!r}: scheme {uri.scheme} is download-only "
                f"(outputs can use {uploadable})"
            )
        if uri.actions:
            raise InvalidUri(f"output {text!r}: actions apply to inputs and resources only")
    return uri


def _uploadable(scheme: str) -> bool:
    return scheme_info(parse_uri(f"{scheme}://x/")).upload
