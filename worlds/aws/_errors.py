"""Translating boto3 errors into :class:`~durable.WorldError` messages that say what to do."""

from __future__ import annotations

from durable._errors import WorldError

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "TransactionInProgressException",
        "RequestThrottled",
    }
)


MISSING_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)
"""What DynamoDB and SQS answer about a table or queue that does not exist."""
MISSING_NOTE = "DurableMissing"
"""Where the world's clients note which resource a missing-resource answer is about."""


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``, if it is one."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def translate(exc: BaseException, doing: str) -> WorldError:
    """Turn a boto3/botocore exception into a :class:`~durable.WorldError`.

    Args:
        exc: What boto3 raised.
        doing: What the world was doing, e.g. ``"appending to run wrun_1"``.
    """
    if isinstance(exc, WorldError):
        return exc
    code = error_code(exc)
    text = " ".join(str(exc).split())
    if code in _TRANSIENT_CODES:
        return WorldError(
            f"AWS is throttling or failing requests ({code}) while {doing}, even after retries "
            "with backoff; nothing was lost. Workers retry; if it persists, check the table's "
            "capacity and the service health.",
            transient=True,
        )
    if code == "NoSuchBucket":
        return WorldError(
            f"the payload bucket does not exist while {doing} ({text}). `durable bootstrap "
            "--prefix NAME` makes it as NAME-payloads-<account id>, which aws://?prefix=NAME "
            "finds; a bucket named otherwise needs aws://?prefix=NAME&bucket=BUCKET."
        )
    if code in MISSING_CODES:
        note = getattr(exc, "response", {}).get(MISSING_NOTE)
        if isinstance(note, dict):
            return _missing(note, code, doing)
        return WorldError(
            f"an AWS resource of the durable world is missing while {doing} ({text}). "
            "Run `durable bootstrap` (with the same --prefix and --region) to create it, or "
            "point the world at the right prefix: aws://?prefix=NAME."
        )
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                "InvalidClientTokenId", "ExpiredTokenException", "InvalidAccessKeyId"):
        return WorldError(
            f"AWS refused the request while {doing} ({text}): check the credentials in use "
            "and that their role allows the durable world's actions (see `durable bootstrap "
            "--template` for the policy)."
        )
    name = type(exc).__name__
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ConnectionClosedError"):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url")
        return WorldError(
            f"cannot reach {endpoint or 'AWS'} while {doing} ({text}); check the network, "
            "AWS_ENDPOINT_URL (or ?endpoint_url= of the world URL) and the region.",
            transient=True,
        )
    if name == "NoCredentialsError":
        return WorldError(
            f"no AWS credentials found while {doing}: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, or run where an IAM role is attached."
        )
    if name == "NoRegionError":
        return WorldError(
            f"no AWS region set while {doing}: set AWS_REGION or use aws://?region=NAME."
        )
    return WorldError(f"AWS request failed while {doing}: {code or name}: {text}")


def _missing(note: dict[str, str], code: str, doing: str) -> WorldError:
    prefix, region = note["prefix"], note["region"]
    return WorldError(
        f"{note['resource']} does not exist in {note['where']} ({code} while {doing}); "
        f"{note['source']}. Create it with `durable bootstrap --prefix {prefix} --region "
        f"{region}`, or point the world at the prefix and region bootstrap used "
        "(aws://?prefix=NAME&region=REGION); `durable outputs --prefix NAME` shows which "
        "resources exist."
    )
