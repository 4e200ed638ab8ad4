"""Keep credentials out of messages, logs and release records.

Secrets come from two places: storage_options (keys such as secret, token,
key, password) and the environment variables cloud SDKs read. Every string
the storage layer shows goes through `Redactor.text`, which masks each secret
as written, URL-encoded and base64-encoded. URIs never carry secrets: the
storage layer refuses user info and query strings in them (objects.uri_problem).
"""

from __future__ import annotations

import base64
import functools
import os
import re
from typing import Any, Callable, TypeVar
from urllib.parse import quote, quote_plus

from .errors import StorageError
from .uris import USERINFO

F = TypeVar("F", bound=Callable)
T = TypeVar("T")

MASK = "***"
_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|session|auth|sas", re.I)
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN", "GCS_OAUTH_TOKEN", "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
)
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


def _encodings(secret: str) -> set[str]:
    """The secret as written and as URL-encoding and base64 would show it."""
    raw = secret.encode("utf-8")
    return {secret, quote(secret, safe=""), quote_plus(secret), base64.b64encode(raw).decode("ascii"),
            base64.urlsafe_b64encode(raw).decode("ascii"), base64.b64encode(raw).decode("ascii").rstrip("=")}


class Redactor:
    """Masks known secret values and credential-bearing URL parts in text."""

    def __init__(self, storage_options: dict | None = None) -> None:
        secrets: set[str] = set()
        _secret_values(storage_options or {}, False, secrets)
        for name in _SECRET_ENV:
            if len(os.environ.get(name, "")) >= _MIN_SECRET_LEN:
                secrets.add(os.environ[name])
        forms = {form for secret in secrets for form in _encodings(secret)}
        # longest first so a secret containing another is masked whole
        self._secrets = sorted(forms, key=len, reverse=True)

    def text(self, value: object) -> str:
        out = str(value)
        for secret in self._secrets:
            out = out.replace(secret, MASK)
        out = USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", out)
        return _QUERY_SECRET.sub(lambda m: m.group("name") + MASK, out)

    def describe(self, exc: BaseException) -> str:
        """`Type: message (notes)` of an exception, redacted."""
        notes = "; ".join(getattr(exc, "__notes__", ()))
        return self.text(f"{type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""))


class MaskedError(Exception):
    """Stands in for a backend exception in a storage error's cause chain: its type name and
    message (credentials masked) and its traceback, so `raise ... from` keeps the story."""


def masked_chain(exc: BaseException, redactor: Redactor, _seen: frozenset = frozenset()) -> MaskedError:
    masked = MaskedError(redactor.describe(exc)).with_traceback(exc.__traceback__)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and id(cause) not in _seen:
        masked.__cause__ = masked_chain(cause, redactor, _seen | {id(exc)})
    return masked


def masked_call(call: Callable[[], T], redactor: Redactor, doing: str) -> T:
    """`call()`; a backend exception becomes StorageError("<doing>: <it, masked>"), its cause chain
    kept masked. A StorageError passes with its message masked."""
    try:
        return call()
    except StorageError as exc:
        masked = redactor.text(exc.args[0]) if exc.args else ""
        if exc.args and masked != exc.args[0]:
            exc.args = (masked, *exc.args[1:])
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised as StorageError
        error = StorageError(f"{doing}: {redactor.describe(exc)}")
        cause = masked_chain(exc, redactor)
    # outside the handler, so the unmasked original is not even the error's __context__
    raise error from cause


def guarded(method: F) -> F:
    """`masked_call` around a method of an object with `uri` and `_redact` (Registry, Publication)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return masked_call(lambda: method(self, *args, **kwargs), self._redact, f"{method.__name__} on {self.uri}")

    return wrapper  # type: ignore[return-value]
