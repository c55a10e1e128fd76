"""The scitq exception hierarchy.

Every error a user can meet is a `ScitqError`. Database errors are translated in one
place (`scitq.db.connection.translate_error`) from the SQLSTATEs raised by the stored
functions (class ``SQ``, listed in ``scitq/sql/functions/00_common.sql``).
"""

from __future__ import annotations


class ScitqError(Exception):
    """Something went wrong in scitq."""

    #: Process exit code used by the CLI for this kind of error.
    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(ScitqError):
    """The scitq configuration is invalid."""

    exit_code = 2


class DatabaseError(ScitqError):
    """The database could not be reached or answered with an unexpected error."""

    exit_code = 3


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be started or stopped."""


class InvalidArgument(ScitqError):
    """An argument is invalid."""

    exit_code = 2


class NotFound(ScitqError):
    """The requested object does not exist."""

    exit_code = 4


class DependencyCycle(InvalidArgument):
    """The submitted dependencies form a cycle."""


class InvalidTransition(ScitqError):
    """The object is not in a state that allows this operation."""

    exit_code = 5


class ExecutionNotLive(ScitqError):
    """The execution is no longer held by this worker (lost, finished or canceled).

    The agent must stop its copy of the task: another attempt may be running.
    """

    exit_code = 6

    def __init__(self, message: str | None = None, execution_ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.execution_ids = execution_ids


class WorkerNotOwned(ScitqError):
    """This database role may not act for that worker."""

    exit_code = 7


class PermissionDenied(ScitqError):
    """This database role is not allowed to do that."""

    exit_code = 7


class WaitTimeout(ScitqError):
    """A wait ended before the batch did."""

    exit_code = 9


class WaitStalled(WaitTimeout):
    """A wait gave up: for too long no worker could take the batch's tasks."""


class InvalidUri(InvalidArgument):
    """A data URI is malformed or uses an unknown scheme."""


class TransferError(ScitqError):
    """A download, an upload, a listing or a deletion failed.

    Attributes:
        uri: the URI that failed (never holds a password).
        reason: why, in one line.
        direction: ``download`` or ``upload`` (the execution failure class); ``list``
            or ``delete`` for `scitq fetch` and `scitq.fetch`.
        retryable: False when trying again cannot help (missing object, refused
            credentials, corrupt archive); transient network errors are retryable.
    """

    exit_code = 10

    def __init__(
        self, uri: str, reason: str, *, direction: str = "download", retryable: bool = True
    ) -> None:
        super().__init__(f"{direction} of {uri} failed: {reason}")
        self.uri = uri
        self.reason = reason
        self.direction = direction
        self.retryable = retryable
