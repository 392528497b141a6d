"""Keep secrets out of notebook outputs: redact before printing.

Executed notebooks end up in handouts, git diffs and screenshots. Anything a notebook prints
that may hold an account id (ARNs, ECR image URIs, default bucket names) or a credential goes
through `redact` first.

Example:
  print(redact("arn:aws:iam::123456789012:role/SageMakerRole"))
  # arn:aws:iam::<account>:role/SageMakerRole
"""

from __future__ import annotations

import os
import re

# Environment variables whose values must never appear in an output.
SECRET_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCOUNT_ID",
    "MOTO_ACCOUNT_ID",
)
ACCOUNT_PLACEHOLDER = "<account>"
SECRET_PLACEHOLDER = "<redacted>"
# An AWS account id is 12 digits; it shows up in ARNs, ECR hosts and default bucket names.
_ACCOUNT_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")


def secret_values(environ: dict | None = None) -> list[str]:
    """The non-trivial values of SECRET_ENV_VARS in `environ` (default os.environ)."""
    environ = os.environ if environ is None else environ
    return [environ[k] for k in SECRET_ENV_VARS if len(environ.get(k, "")) >= 4]


def redact(value, environ: dict | None = None) -> str:
    """`str(value)` with credentials from the environment and 12-digit account ids masked."""
    text = str(value)
    for secret in sorted(secret_values(environ), key=len, reverse=True):
        text = text.replace(secret, SECRET_PLACEHOLDER)
    return _ACCOUNT_ID.sub(ACCOUNT_PLACEHOLDER, text)


def credentials_summary(environ: dict | None = None) -> str:
    """Says where AWS credentials would come from, never what they are."""
    environ = os.environ if environ is None else environ
    if environ.get("AWS_ACCESS_KEY_ID"):
        kind = "temporary (with session token)" if environ.get("AWS_SESSION_TOKEN") else "long-term"
        return f"environment variables ({kind})"
    if environ.get("AWS_PROFILE"):
        return f"profile {environ['AWS_PROFILE']!r}"
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "container / web identity role"
    return "none in the environment (an instance role may still provide them)"


def find_secrets(texts: dict[str, str], secrets: dict[str, str]) -> list[tuple[str, str]]:
    """(text name, secret name) for every secret value that occurs in one of the texts."""
    return [
        (name, secret_name)
        for name, text in texts.items()
        for secret_name, value in secrets.items()
        if value and value in text
    ]
