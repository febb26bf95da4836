"""AWS's errors in a user's words: the code and message of a botocore error, read
without importing botocore (any error with AWS's `response` shape will do)."""

from __future__ import annotations


def error_code(error: BaseException) -> str:
    """The code AWS answered with (`ThrottlingException`...), or '' for other errors."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_message(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    detail = response.get("Error", {})
    return str(detail.get("Message") or detail.get("Code") or error)
