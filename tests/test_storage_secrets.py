"""Credentials never reach release records, error messages or log output."""

from __future__ import annotations

import logging

import pytest

from tf_bigexport.storage import Registry, StorageError, VersionPolicy
from tf_bigexport.storage.redact import Redactor
from tf_bigexport.storage.uris import display_uri
from storage_testkit import make_export, read_tree

FAKE_SECRET = "s3cr3t-Tok3n-9f8e7d6c5b4a"
FAKE_ENV_SECRET = "env-Secret-1a2b3c4d5e6f"


@pytest.fixture
def loud_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="storage")
    caplog.set_level(logging.INFO)
    return caplog


def _options_with_secrets(target) -> dict:
    options = dict(target.storage_options)
    if target.kind == "s3":
        options["secret"] = FAKE_SECRET  # moto accepts any secret
    else:
        # extra options reach the filesystem object without being used for auth
        options["session_token_hint"] = FAKE_SECRET
    return options


def test_secrets_stay_out_of_records_errors_and_logs(registry_target, tmp_path, monkeypatch,
                                                     loud_logs, capfd):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_ENV_SECRET)
    options = _options_with_secrets(registry_target)
    reg = Registry(registry_target.uri, storage_options=options)
    export = make_export(tmp_path / "e")
    info = {"fingerprint": {"x": 1}, "source": f"{registry_target.uri}?access_token={FAKE_SECRET}"}
    record = reg.publish(str(export), "m", VersionPolicy.next_integer(), info, "job-s")

    errors = []
    for bad in (lambda: reg.read_release_record("m", 9),
                lambda: reg.publish(str(export), "m", VersionPolicy.explicit(1), {}, "job-t"),
                lambda: reg.publication("m", "job/../x", reg.read_release_record("m", 1).manifest)):
        with pytest.raises(StorageError) as caught:
            bad()
        errors.append(str(caught.value))
    if registry_target.kind != "local":
        missing_bucket = registry_target.uri.split("://")[0] + "://no-such-bucket-x/reg"
        with pytest.raises(StorageError) as caught:
            Registry(missing_bucket, storage_options=options).publish(
                str(export), "m", VersionPolicy.next_integer(), {}, "job-u")
        errors.append(str(caught.value))
        assert "no-such-bucket-x" in errors[-1]

    fs = registry_target.filesystem()
    stored = read_tree(fs, fs._strip_protocol(registry_target.uri))
    out, err = capfd.readouterr()
    haystacks = {"record": record.to_json(), "errors": "\n".join(errors), "logs": loud_logs.text,
                 "stdout": out, "stderr": err,
                 "objects": b"\n".join(stored.values()).decode("latin-1")}
    for where, text in haystacks.items():
        assert FAKE_SECRET not in text, where
        assert FAKE_ENV_SECRET not in text, where
    assert "access_token=***" in record.to_json()
    assert loud_logs.text  # something was logged, and checked


def test_redactor_and_display_uri():
    red = Redactor({"key": "AKIAFAKEKEY123", "client_kwargs": {"aws_session_token": "tok-abcdef"},
                    "endpoint_url": "http://127.0.0.1:9000", "token": "anon"})
    text = red.text("AKIAFAKEKEY123 tok-abcdef http://127.0.0.1:9000 anon "
                    "https://u:pw@h/p?X-Amz-Signature=abc&x=1")
    assert text == "*** *** http://127.0.0.1:9000 anon https://***@h/p?X-Amz-Signature=***&x=1"
    assert display_uri("s3://AKIA:secret@bucket/reg?token=t") == "s3://bucket/reg"
    assert display_uri("/local/path") == "/local/path"
