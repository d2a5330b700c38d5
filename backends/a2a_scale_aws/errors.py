"""Errors of the AWS backend, and the mapping of botocore errors to them."""

from __future__ import annotations

from typing import Any

from a2a_scale import A2AScaleError


class AWSBackendError(A2AScaleError):
    """An AWS call failed; the message names the operation and resource."""


class ResourceMissingError(AWSBackendError, LookupError):
    """A table or topic does not exist; provision it first."""


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore `ClientError`, or ``''``."""
    response: Any = getattr(error, 'response', None)
    if not isinstance(response, dict):
        return ''
    return str(response.get('Error', {}).get('Code', ''))


def error_message(error: BaseException) -> str:
    """The message of a botocore `ClientError` and its cancellation reasons."""
    response: Any = getattr(error, 'response', None)
    if not isinstance(response, dict):
        return ''
    reasons = response.get('CancellationReasons') or []
    return ' '.join(
        [str(response.get('Error', {}).get('Message', ''))]
        + [str(r['Message']) for r in reasons if r.get('Message')]
    )


def cancellation_codes(error: BaseException) -> list[str]:
    """The per-item reasons of a cancelled ``TransactWriteItems``."""
    response: Any = getattr(error, 'response', None)
    if not isinstance(response, dict):
        return []
    reasons = response.get('CancellationReasons') or []
    return [str(r.get('Code', 'None')) for r in reasons]
