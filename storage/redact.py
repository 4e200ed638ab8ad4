"""Keep credentials out of messages, logs and release records.

Secrets come from two places: storage_options (keys such as secret, token,
key, password) and the environment variables cloud SDKs read. Every string
the storage layer shows goes through `Redactor.text`.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|session|auth|sas", re.I)
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN", "GCS_OAUTH_TOKEN", "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
)
# user:password@ in URLs, and signed-URL / token query parameters.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_QUERY_SECRET = re.compile(
    r"(?P<name>(?:access_token|token|sig|signature|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|x-goog-signature|x-goog-credential|key)=)[^&\s'\"]+",
    re.I,
)
_MIN_SECRET_LEN = 6  # shorter values (e.g. "anon", "true") would mask ordinary words


def _secret_values(value: Any, under_secret_key: bool, out: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _secret_values(v, under_secret_key or bool(_SECRET_KEY.search(str(k))), out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _secret_values(v, under_secret_key, out)
    elif isinstance(value, (str, bytes)) and under_secret_key:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if len(text) >= _MIN_SECRET_LEN:
            out.add(text)


class Redactor:
    """Masks known secret values and credential-bearing URL parts in text."""

    def __init__(self, storage_options: dict | None = None) -> None:
        secrets: set[str] = set()
        _secret_values(storage_options or {}, False, secrets)
        for name in _SECRET_ENV:
            if len(os.environ.get(name, "")) >= _MIN_SECRET_LEN:
                secrets.add(os.environ[name])
        # longest first so a secret containing another is masked whole
        self._secrets = sorted(secrets, key=len, reverse=True)

    def text(self, value: object) -> str:
        out = str(value)
        for secret in self._secrets:
            out = out.replace(secret, MASK)
        out = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", out)
        return _QUERY_SECRET.sub(lambda m: m.group("name") + MASK, out)

    def describe(self, exc: BaseException) -> str:
        """`Type: message (notes)` of an exception, redacted."""
        notes = "; ".join(getattr(exc, "__notes__", ()))
        return self.text(f"{type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""))
