"""The one exception tree of hyper, and the exit codes the commands map it to.

    HyperError                 anything hyper reports to a user (exit 1)
    ├── UsageError             bad input from the user; nothing was changed (exit 2)
    │   └── HostRejected       the host refused a request as invalid (exit 2)
    ├── NotFound               a job, host or resource that does not exist (exit 2)
    ├── HostUnreachable        the host could not be reached (exit 69)
    ├── AuthError              the host refused the API key (exit 77)
    │   └── HostUntrusted      the server did not prove it is the host: the key was not
    │                          sent (a socket held by another user, a certificate that is
    │                          not the pinned one) (exit 77)
    ├── Conflict               the request no longer fits the state, e.g. a late report
    │                          from a worker whose lease expired (exit 1)
    ├── HostFailure            the host answered with a server error (exit 1)
    ├── StoreDamaged           a local host's store failed its check at start, or lost
    │                          what it had acknowledged: restore it (exit 1)
    ├── StoreUnavailable       the host's store cannot take writes now: its disk is full
    │                          or another process locks it; nothing was changed (exit 1)
    ├── DeployFailed           a resource could not be deployed; its log says why (exit 1)
    ├── CommandFailed          a program hyper ran exited non-zero (exit 1)
    ├── RemoteError            a call of the Python API gave no outcome of its own on its
    │                          worker (its job ended without one, the worker's Python
    │                          cannot run it, or its exception could not be brought back)
    └── PoolError              a WorkerPool could not launch its minimum of workers

Commands translate these to one line on stderr and the exit code; the library
never prints or exits.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 69  # sysexits EX_UNAVAILABLE
EXIT_AUTH = 77  # sysexits EX_NOPERM
EXIT_CANCELLED = 143  # a waited-for job was cancelled (128 + SIGTERM, what qdel sends)
EXIT_TIME_LIMIT = 124  # a job stopped at its time limit (as GNU timeout exits; qdel gives 143)
EXIT_OUT_OF_MEMORY = 125  # a job ended for using more memory than it asked for


class HyperError(Exception):
    exit_code = EXIT_FAILURE


class UsageError(HyperError):
    exit_code = EXIT_USAGE


class HostRejected(UsageError):
    """The host refused a request because its content is invalid."""


class NotFound(HyperError):
    exit_code = EXIT_USAGE


class HostUnreachable(HyperError):
    exit_code = EXIT_UNREACHABLE


class AuthError(HyperError):
    exit_code = EXIT_AUTH


class HostUntrusted(AuthError):
    """The server did not prove it is the host; the key was not sent to it."""


class Conflict(HyperError):
    exit_code = EXIT_FAILURE


class HostFailure(HyperError):
    exit_code = EXIT_FAILURE


class StoreDamaged(HyperError):
    """A local host's store is damaged or rolled back; the daemon refused to serve it."""


class StoreUnavailable(HyperError):
    exit_code = EXIT_FAILURE


class HostStopping(HyperError):
    """The host is stopping: a request that would wait for news is refused, to be sent
    again once the host is back."""


class DeployFailed(HyperError):
    exit_code = EXIT_FAILURE


class CommandFailed(HyperError):
    """Carries what ran and what it said, so the message can show both."""

    exit_code = EXIT_FAILURE

    def __init__(self, command: list[str], code: int, stdout: str, stderr: str) -> None:
        last = (stderr.strip() or stdout.strip()).splitlines()[-1:] or [""]
        super().__init__(f"{' '.join(command)} exited with {code}: {last[0]}")
        self.command, self.code, self.stdout, self.stderr = command, code, stdout, stderr


class RemoteError(HyperError):
    """A call on a worker gave no outcome of its own: its job ended without one, the
    worker's Python cannot run it, or the exception it raised could not be brought back
    (then this error carries its type, message and traceback)."""


class PoolError(HyperError):
    """The pool could not launch the minimum number of workers."""


# what str.splitlines() breaks a line at, written as escapes so a message stays one line
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def is_utf8(text: str) -> bool:
    """Whether text holds no undecodable bytes (Python's stand-ins for non-UTF-8 in argv,
    os.environ and paths): nothing else can be sent to a host."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def one_line(text: str) -> str:
    """Text for a one-line message: bytes that are not UTF-8 as \\xNN, line breaks escaped."""
    raw = text.encode(errors="surrogateescape").decode(errors="backslashreplace")
    return raw.translate(_LINE_BREAKS)
