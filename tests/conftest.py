"""Shared pytest fixtures.

Object-store emulators (tests/emulators.py) start once per session on
127.0.0.1; each test gets its own registry prefix inside the shared bucket.
`registry_target` is parametrized over local / gcs / s3, so a test using it
(or `registry_uri` + `registry_storage_options`) runs against all three.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import compat_suite  # noqa: E402
import emulators  # noqa: E402  (sets GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT before gcsfs connects)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in compat_suite.COMPAT_FILES:
            item.add_marker(pytest.mark.compat)


@pytest.fixture(scope="session")
def gcs_emulator():
    with emulators.start_gcs() as emu:
        yield emu


@pytest.fixture(scope="session")
def s3_emulator():
    with emulators.start_s3() as emu:
        yield emu


@pytest.fixture(scope="session")
def cc_build():
    """The C++ loader and runner (cc/), built once per session against this TensorFlow."""
    import cc_testkit

    return cc_testkit.build()


@dataclass
class RegistryTarget:
    """Where a test's registry lives: URI + fsspec storage options."""

    kind: str  # "local" | "gcs" | "s3"
    uri: str
    storage_options: dict = field(default_factory=dict)

    def registry(self, **kwargs):
        from tf_bigexport.storage import Registry

        return Registry(self.uri, storage_options=self.storage_options, **kwargs)

    def filesystem(self):
        import fsspec

        fs, _ = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        return fs


def _target(request, tmp_path) -> RegistryTarget:
    prefix = f"reg-{uuid.uuid4().hex[:12]}"
    if request.param == "local":
        return RegistryTarget("local", str(tmp_path / prefix))
    emu = request.getfixturevalue(f"{request.param}_emulator")
    return RegistryTarget(request.param, emu.uri(prefix), dict(emu.storage_options))


@pytest.fixture(params=["local", "gcs", "s3"])
def registry_target(request, tmp_path) -> RegistryTarget:
    return _target(request, tmp_path)


@pytest.fixture(params=["gcs", "s3"])
def remote_target(request, tmp_path) -> RegistryTarget:
    """Object stores only: where requests can fail the way networks do."""
    return _target(request, tmp_path)


@pytest.fixture
def registry_uri(registry_target) -> str:
    return registry_target.uri


@pytest.fixture
def registry_storage_options(registry_target) -> dict:
    return registry_target.storage_options
