"""`register`: tell model registries about an already published version (retries a failed registration).

Idempotent: registries that already know the version say so and are left alone.
"""
from __future__ import annotations

import sys

from tf_bigexport.pipeline.exit_codes import ExitCode, fail
from tf_bigexport.pipeline.locations import open_registry, split_version_uri
from tf_bigexport.pipeline.options import registration_from


def register_release(uri: str, registration: dict) -> list:
    """Registers <registry>/<model>/<version> everywhere configured; returns RegistrationResults."""
    from tf_bigexport.registries import RegistrationConfig, register_everywhere

    registry_uri, model, version = split_version_uri(uri)
    registry = open_registry(registry_uri)
    record = registry.read_release_record(model, version)
    return register_everywhere(record, RegistrationConfig(**registration).adapters(registry))


def register_command(args) -> int:
    try:
        results = register_release(args.uri, registration_from(args))
    except Exception as e:  # storage errors name the URI and what is wrong
        return fail(f"register: {e}")
    for result in results:
        print(f"{args.uri}: {result.describe()}", file=sys.stdout if result.ok else sys.stderr)
    return ExitCode.OK if all(r.ok for r in results) else ExitCode.FAILED
