"""Registry.release_state names what a version number is, at every point of the protocol."""

from __future__ import annotations

import pytest

from tf_bigexport.storage import StorageError, VersionConflictError, VersionPolicy
from tf_bigexport.storage.release_state import CLAIMED, DAMAGED, FREE, ORPHANED, PUBLISHED, UNRECORDED
from storage_testkit import make_export


class Stop(RuntimeError):
    pass


def _publish_until(target, export, step, job="job-a"):
    def hook(name):
        if name == step:
            raise Stop(step)

    with pytest.raises((Stop, StorageError)):
        target.registry(step_hook=hook).publish(str(export), "m", VersionPolicy.explicit(1), {}, job)


@pytest.mark.parametrize("step,state", [("verified", FREE), ("claimed", CLAIMED), ("copied", CLAIMED),
                                        ("marker", UNRECORDED), ("recorded", PUBLISHED)])
def test_state_after_each_step(registry_target, tmp_path, step, state):
    export = make_export(tmp_path / "e")
    _publish_until(registry_target, export, step)
    reg = registry_target.registry()
    found = reg.release_state("m", 1)
    assert found.state == state, found
    if state != FREE:
        assert found.job_key == "job-a" and found.held_by("job-a") and not found.held_by("job-b")
        assert reg.state_of_job("m", "job-a").state == state
        with pytest.raises(VersionConflictError, match=f"version 1 of model 'm'.*it is {state}"):
            reg.check_version_free("m", 1, "job-b")
        assert reg.check_version_free("m", 1, "job-a").state == state
    else:
        assert reg.state_of_job("m", "job-a") is None
        assert reg.check_version_free("m", 1).state == FREE
    if state == UNRECORDED:
        assert "program file present but no release record" in found.detail


def test_orphaned_and_damaged_versions(registry_target, tmp_path):
    export = make_export(tmp_path / "e")
    reg = registry_target.registry()
    reg.publish(str(export), "m", VersionPolicy.explicit(1), {}, "job-a")
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    fs.makedirs(f"{root}/m/2/variables", exist_ok=True)
    fs.pipe_file(f"{root}/m/2/variables/variables.index", b"left by hand")
    fs.pipe_file(f"{root}/m/.releases/1.json", b'{"schema": "tf-bigexport.release/1", "vers')
    fs.invalidate_cache()
    orphan = reg.release_state("m", 2)
    assert (orphan.state, orphan.job_key) == (ORPHANED, None) and "no claim" in orphan.detail
    damaged = reg.release_state("m", 1)
    assert damaged.state == DAMAGED and "1.json" in damaged.detail and "not valid JSON" in damaged.detail
    assert reg.release_state("m", 3).state == FREE
