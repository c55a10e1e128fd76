"""The URI grammar of inputs, resources and outputs (scitq v1's, made strict).

::

    uri     = scheme *( "@" option ) "://" rest *( "|" action )
    scheme  = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )      ; case-insensitive
    option  = 1*( ALPHA / DIGIT / "_" / "-" / "=" / "." )
    rest    = [ authority ] "/" path   ; or, for file://, a local path
    action  = "gunzip" / "untar" / "unzip" / "mv:" subdir

Examples: ``s3://bucket/data/sample.fq.gz|gunzip``, ``ftp://ftp.example.org/pub/db.tgz|untar``,
``https://example.org/ref/``, ``file:///scratch/ref.fa``, ``run+fastq@sra://SRR000001``.

A URI whose rest ends in ``/`` is a folder, copied recursively. Actions apply to
downloads only (inputs and resources), in the order written. ``mv:subdir`` downloads
into that subdirectory of the target (relative, no ``..``).

Credentials are never part of a URI: ``user:password@`` in the authority is refused
(the URI is stored in the task row and shown in logs and the dashboard); configure them
in the scitq configuration or ``~/.netrc`` instead (docs/transfer.md). A user name
alone (``ftp://alice@host/path``) is accepted and selects the ``.netrc`` entry.

The ``|`` character is reserved for actions: a path cannot contain it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from scitq.errors import InvalidUri

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_OPTION = re.compile(r"[A-Za-z0-9_.=\-]+")
#: Control characters (including newlines and tabs) are never part of a valid URI.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: ``user:password@`` in an authority.
_PASSWORD = re.compile(r"^([^/@]*?):([^/@]*)@")

#: The actions, and whether they take an argument after ``:``.
ACTIONS: dict[str, bool] = {"gunzip": False, "untar": False, "unzip": False, "mv": True}


@dataclass(frozen=True, slots=True)
class Action:
    """One ``|action`` of a URI.

    Attributes:
        name: ``gunzip``, ``untar``, ``unzip`` or ``mv``.
        argument: the subdirectory of ``mv:subdir``; None for the others.
    """

    name: str
    argument: str | None = None

    def __str__(self) -> str:
        return self.name if self.argument is None else f"{self.name}:{self.argument}"


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed URI; build it with `parse_uri`.

    Attributes:
        text: the URI as written (it never holds a password: those are refused).
        scheme: the scheme, lower case (``s3``, ``run+fastq``...).
        options: the ``@option`` parts, in order.
        rest: what lies between ``://`` and the first ``|``.
        actions: the ``|action`` parts, in order.
    """

    text: str
    scheme: str
    options: tuple[str, ...]
    rest: str
    actions: tuple[Action, ...]

    @property
    def is_folder(self) -> bool:
        """True when the URI names a folder (its rest ends in ``/``)."""
        return self.rest.endswith("/")

    @property
    def authority(self) -> str:
        """The part of `rest` before the first ``/`` (bucket, host[:port], accession)."""
        return self.rest.split("/", 1)[0]

    @property
    def path(self) -> str:
        """The part of `rest` from the first ``/`` on ("" when there is none)."""
        _head, sep, tail = self.rest.partition("/")
        return sep + tail

    @property
    def location(self) -> str:
        """``scheme://rest``: the URI without options and actions."""
        return f"{self.scheme}://{self.rest}"

    @property
    def name(self) -> str:
        """The last path component (a folder's own name for a folder URI)."""
        return PurePosixPath(self.rest.rstrip("/")).name if self.path.strip("/") else ""

    @property
    def subdir(self) -> str | None:
        """The ``mv:`` target subdirectory, or None."""
        for action in self.actions:
            if action.name == "mv":
                return action.argument
        return None

    def child(self, relative: str) -> Uri:
        """The URI of ``relative`` inside this folder URI (options kept, actions dropped).

        Args:
            relative: a ``/``-separated path relative to this folder.
        """
        base = self.rest if self.rest.endswith("/") else self.rest + "/"
        rest = base + relative.lstrip("/")
        head = "@".join((self.scheme, *self.options))
        return Uri(f"{head}://{rest}", self.scheme, self.options, rest, ())

    def __str__(self) -> str:
        return self.text


def redact(text: str) -> str:
    """``text`` with any ``user:password@`` replaced by ``user:***@`` (for messages)."""
    head, sep, rest = text.partition("://")
    if not sep:
        return text
    return head + sep + _PASSWORD.sub(lambda m: f"{m.group(1)}:***@", rest, count=1)


def check_subdir(subdir: str, text: str = "") -> str:
    """Validate the argument of ``mv:``: a non-empty relative path without ``..``.

    Returns:
        The subdirectory, normalised (no empty or ``.`` components).

    Raises:
        InvalidUri: naming the problem.
    """
    where = f" in {text!r}" if text else ""
    if not subdir:
        raise InvalidUri(f"mv: needs a subdirectory (mv:subdir){where}")
    if subdir.startswith("/") or subdir.startswith("\\"):
        raise InvalidUri(f"mv:{subdir} must be a relative path{where}")
    parts = [part for part in subdir.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidUri(f"mv:{subdir} must not contain '..'{where}")
    if not parts:
        raise InvalidUri(f"mv:{subdir} names no subdirectory{where}")
    return "/".join(parts)


def _parse_action(word: str, text: str) -> Action:
    name, sep, argument = word.partition(":")
    if name not in ACTIONS:
        known = ", ".join(sorted(f"{n}:subdir" if a else n for n, a in ACTIONS.items()))
        raise InvalidUri(f"unknown action {word!r} in {text!r} (known: {known})")
    if ACTIONS[name]:
        return Action(name, check_subdir(argument, text))
    if sep:
        raise InvalidUri(f"action {name} takes no argument in {text!r}")
    return Action(name)


def parse_uri(text: str) -> Uri:
    """Parse one URI of the v1 grammar (see the module docstring).

    Only the syntax is checked here; `scitq.transfer.validate_uri` also checks that the
    scheme is known and that its transport accepts the URI.

    Raises:
        InvalidUri: the message names what is wrong and never shows a password.
    """
    if not isinstance(text, str):
        raise InvalidUri(f"a URI must be a string, not {type(text).__name__}")
    shown = redact(text)
    if not text:
        raise InvalidUri("empty URI")
    if text != text.strip():
        raise InvalidUri(f"URI {shown!r} has leading or trailing white space")
    if _CONTROL.search(text):
        raise InvalidUri(f"URI {shown!r} contains a control character")
    head, sep, body = text.partition("://")
    if not sep:
        raise InvalidUri(
            f"URI {shown!r} has no scheme (expected scheme://path, e.g. s3://bucket/key)"
        )
    scheme, *options = head.split("@")
    if not _SCHEME.fullmatch(scheme):
        raise InvalidUri(f"invalid scheme {scheme!r} in {shown!r}")
    for option in options:
        if not _OPTION.fullmatch(option):
            raise InvalidUri(f"invalid option {option!r} in {shown!r}")
    rest, *action_words = body.split("|")
    if not rest:
        raise InvalidUri(f"URI {shown!r} has nothing after '://'")
    if _PASSWORD.match(rest):
        raise InvalidUri(
            f"URI {shown!r} contains a password: credentials are never stored in URIs; "
            "configure them in the scitq configuration or ~/.netrc (docs/transfer.md)"
        )
    actions = tuple(_parse_action(word, shown) for word in action_words)
    names = [action.name for action in actions]
    for name in set(names):
        if names.count(name) > 1:
            raise InvalidUri(f"action {name} appears twice in {shown!r}")
    return Uri(text, scheme.lower(), tuple(options), rest, actions)
