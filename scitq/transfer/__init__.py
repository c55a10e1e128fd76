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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from scitq.config import TransferSettings
from scitq.errors import InvalidUri
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
from scitq.transfer.uri import Action, Uri, parse_uri

if TYPE_CHECKING:
    from scitq.transfer.cache import ResourceCache
    from scitq.transfer.staging import fetch, fetch_with_retries, stage_inputs, upload_outputs

#: What the agent and `scitq fetch` use, imported on first use: submitting a task (the
#: CLI's `launch`, `scitq.Client`) checks URIs only, and need not load the staging code.
_LAZY = {
    "ResourceCache": "scitq.transfer.cache",
    "fetch": "scitq.transfer.staging",
    "fetch_with_retries": "scitq.transfer.staging",
    "stage_inputs": "scitq.transfer.staging",
    "upload_outputs": "scitq.transfer.staging",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scitq.transfer' has no attribute {name!r}")


Role = Literal["input", "resource", "output"]

__all__ = [
    "Action",
    "Progress",
    "RemoteEntry",
    "ResourceCache",
    "Role",
    "Transport",
    "Uri",
    "check_task_uris",
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


def validate_uri(text: str, role: Role = "input", settings: TransferSettings | None = None) -> Uri:
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
    check_uri(uri, settings)
    if role == "output":
        if not scheme_info(uri, settings).upload:
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


def check_task_uris(
    fields: Mapping[str, Any], task: str, settings: TransferSettings | None = None
) -> None:
    """Refuse malformed URIs and unknown schemes of a task's fields before it is queued.

    Args:
        fields: the task's ``output``, ``inputs`` and ``resources`` (others are ignored).
        task: how errors name the task (``task #3``).

    Raises:
        InvalidUri: naming the task, the field, the URI and what is wrong.
    """
    checks: list[tuple[str, Role, Any]] = [
        ("output", "output", [fields["output"]] if fields.get("output") else []),
        ("inputs", "input", fields.get("inputs") or []),
        ("resources", "resource", fields.get("resources") or []),
    ]
    for key, role, values in checks:
        if key != "output" and isinstance(values, str):
            raise InvalidUri(
                f"{task} {key}: a list of URIs is expected, not the string {values!r} "
                f"(write {key}={values.split()!r})"
            )
        for value in values:
            if isinstance(value, str) and any(c.isspace() for c in value.strip()):
                raise InvalidUri(
                    f"{task} {key}: URI {value!r} contains white space: give one URI per "
                    "list item (space-separated URIs are scitq v1's form, which "
                    "scitq.workflow.Workflow and scitq.lib accept)"
                )
            try:
                validate_uri(value, role, settings)
            except InvalidUri as error:
                raise InvalidUri(f"{task} {key}: {error}") from None
