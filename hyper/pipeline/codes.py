"""The exit codes of a pipeline run, and the failure that carries one.

The original framework's codes where it had one, so scripts and alarms that read
them keep working; hyper's own for what it did not tell apart.
"""

from __future__ import annotations

from hyper.errors import HyperError

INVALID = 2  # the tasks.json is not valid: nothing ran (the original exited 255)
UNEXPECTED = 4  # a step failed in a way none of these codes names
STORE_SOURCE_MISSING = 43
FETCH_FAILED = 213  # one object could not be fetched
MOVE_FAILED = 213
FETCH_PREFIX_FAILED = 214  # some objects under a prefix could not be fetched
STORE_FAILED = 215
ARCHIVE_FAILED = 216  # hyper's: an archive could not be made or unpacked
NO_INPUT_FILES = 232
RUN_FAILED = 244  # a command could not be started, or ran past its timeout


class StepFailed(HyperError):
    """A step failed; `code` is what the run exits with when it is the first failure."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
