"""Exceptions raised by :mod:`sglang_lsm`.

Every error the engine reports arrives as a :class:`StoreError` (or a subclass), with the
engine's message and a short stable ``code`` attribute. Subclasses also derive from the
matching built-in exception, so ``except ValueError`` or ``except OSError`` work as expected.

========================  ===============================================  ==================
class                     engine codes                                     also a
========================  ===============================================  ==================
InvalidArgumentError      invalid_argument, key_too_long, empty_key,       ValueError
                          empty_value
LengthMismatchError       length_mismatch                                  ValueError
StoreLockedError          locked                                           OSError
NoSpaceError              no_space                                         OSError
StoreIOError              io                                               OSError
CorruptStoreError         corrupt, format_version, index                   -
StoreClosedError          closed                                           -
ServiceUnavailableError   unavailable (node service down, timed out)       ConnectionError
ServiceRefusedError       refused (uid/gid, protocol version, client cap)  ConnectionError
========================  ===============================================  ==================
"""

from __future__ import annotations

__all__ = [
    "StoreError",
    "InvalidArgumentError",
    "LengthMismatchError",
    "StoreLockedError",
    "NoSpaceError",
    "StoreIOError",
    "CorruptStoreError",
    "StoreClosedError",
    "ServiceUnavailableError",
    "ServiceRefusedError",
]


class StoreError(Exception):
    """Base class of every error raised by the store.

    Attributes:
        code: the engine's short error code, e.g. ``"length_mismatch"``.
        message: the engine's human-readable message.
    """

    code: str = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgumentError(StoreError, ValueError):
    """Arguments that can never succeed: bad option, empty or over-long key, empty value,
    mismatched list lengths, unusable buffer."""

    code = "invalid_argument"


class LengthMismatchError(InvalidArgumentError):
    """The destination buffers of a read do not add up to the stored page's length."""

    code = "length_mismatch"


class StoreLockedError(StoreError, OSError):
    """Another process or handle has the store directory open."""

    code = "locked"


class NoSpaceError(StoreError, OSError):
    """The file system ran out of space; the failed write was rolled back."""

    code = "no_space"


class StoreIOError(StoreError, OSError):
    """Any other operating-system I/O failure."""

    code = "io"


class CorruptStoreError(StoreError):
    """On-disk data failed validation, or was written by an incompatible format version."""

    code = "corrupt"


class StoreClosedError(StoreError):
    """The store was closed; open a new one."""

    code = "closed"


class ServiceUnavailableError(StoreError, ConnectionError):
    """The node service could not be reached, timed out or dropped the connection. The call
    had no effect to rely on; the next call reconnects."""

    code = "unavailable"


class ServiceRefusedError(StoreError, ConnectionError):
    """The node service refused this client: a uid or gid it does not allow, another
    protocol version, or its client bound reached. The message says which, and the fix."""

    code = "refused"


class CascadeUnfinishedError(StoreError):
    """A cascading delete stopped at its step bound while concurrent puts kept extending the
    subtree. What it removed stays removed, nothing is orphaned; retry the delete."""

    code = "cascade_unfinished"


_BY_CODE: dict[str, type[StoreError]] = {
    "invalid_argument": InvalidArgumentError,
    "key_too_long": InvalidArgumentError,
    "empty_key": InvalidArgumentError,
    "empty_value": InvalidArgumentError,
    "length_mismatch": LengthMismatchError,
    "locked": StoreLockedError,
    "no_space": NoSpaceError,
    "io": StoreIOError,
    "corrupt": CorruptStoreError,
    "format_version": CorruptStoreError,
    "index": CorruptStoreError,
    "closed": StoreClosedError,
    "unavailable": ServiceUnavailableError,
    "refused": ServiceRefusedError,
    "cascade_unfinished": CascadeUnfinishedError,
}


def _from_native(code: str, message: str) -> StoreError:
    """Called by the compiled module to build the exception for an engine error code."""
    exc = _BY_CODE.get(code, StoreError)(message)
    exc.code = code
    return exc
