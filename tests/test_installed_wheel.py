"""The project as a user gets it: the wheel installed (not editable) in a fresh venv.

tools/compat.py (`make test-compat`) builds the wheel with `pip wheel .`,
installs it next to a TensorFlow installed first, and runs these from a
directory holding the user's own `storage/`, `transforms/` and `pipeline/`
packages. They are marked `installed`, which the default suite deselects: in
the development venv the project is an editable install and they would prove
nothing, so there they fail rather than skip.
"""
from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.installed

REPO = pathlib.Path(__file__).resolve().parents[1]
WHEEL = os.environ.get("TF_BIGEXPORT_WHEEL_TEST")
TENSORFLOW_DIST = os.environ.get("TF_BIGEXPORT_TENSORFLOW_DIST")
USER_PACKAGES = ("storage", "transforms", "pipeline", "imageformat", "registries")


@pytest.fixture(scope="module", autouse=True)
def wheel_install() -> None:
    if not WHEEL:
        pytest.fail("these check an installed wheel: run them through `make test-compat` (tools/compat.py)")


def user_project(root: pathlib.Path) -> pathlib.Path:
    """A user's project whose packages share our repository folders' names."""
    for name in USER_PACKAGES:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("USER_PACKAGE = True\n")
    return root


def run(command: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_package_is_the_installed_one_not_the_repository() -> None:
    import tf_bigexport
    from tf_bigexport.imageformat import _highwayhash, tf_support
    location = pathlib.Path(tf_bigexport.__file__).resolve()
    assert location.parent.parent.name == "site-packages" and location.parent != REPO / "tf_bigexport"
    assert pathlib.Path(tf_support.__file__).resolve().parent == location.parent / "imageformat"
    # The native HighwayHash, compiled into the wheel by `pip wheel .`.
    assert pathlib.Path(_highwayhash.__file__).suffix == ".so"
    assert pathlib.Path(_highwayhash.__file__).resolve().parent == location.parent / "imageformat"


def test_only_tf_bigexport_lands_in_site_packages() -> None:
    files = importlib.metadata.files("tf-bigexport")
    top_level = {f.parts[0] for f in files if f.parts[0] != ".."}  # ".." : the bin/tf-bigexport script
    dist_info = {name for name in top_level if name.endswith(".dist-info")}
    assert top_level - dist_info == {"tf_bigexport"}
    for name in USER_PACKAGES:
        assert not any(f.parts[0] == name for f in files), name


def test_one_tensorflow_distribution_the_one_installed_first() -> None:
    providers = importlib.metadata.packages_distributions().get("tensorflow", [])
    # Wheels spell their names differently (tensorflow_cpu in 2.18's metadata): compare them normalized.
    assert sorted({re.sub(r"[-_.]+", "-", p).lower() for p in providers}) == [TENSORFLOW_DIST], providers
    requirements = importlib.metadata.requires("tf-bigexport") or []
    plain = [r for r in requirements if "extra ==" not in r]
    assert not any(r.split()[0].startswith(("tensorflow", "tf-nightly")) for r in plain), plain


def test_users_own_packages_stay_theirs_and_ours_work_beside_them(tmp_path: pathlib.Path) -> None:
    project = user_project(tmp_path / "project")
    theirs = run([sys.executable, "-c", "import storage, transforms, pipeline; "
                  "print(storage.USER_PACKAGE, transforms.USER_PACKAGE, pipeline.USER_PACKAGE)"], project)
    assert theirs.stdout.split() == ["True", "True", "True"]
    script = pathlib.Path(sys.executable).parent / "tf-bigexport"
    demo = run([str(script), "demo", "--registry", "registry"], project)
    assert "published" in demo.stdout and "FAILED" not in demo.stdout
    # The demo asks for 256 KiB shards: TensorFlow 2.16 on writes them, on 2.15 our save reshards.
    shards = sorted((project / "registry" / "mobilenet" / "1" / "variables").glob("variables.data-*"))
    assert len(shards) >= 3 and all(p.name.endswith(f"-of-{len(shards):05d}") for p in shards), shards
    for model in ("mobilenet", "split", "vocab"):
        assert (project / "registry" / model / "1").is_dir(), model
    for version in ("registry/mobilenet/1", "registry/split/1"):
        verify = run([sys.executable, "-m", "tf_bigexport", "verify", version], project)
        assert "verified: all files match the release record" in verify.stdout, version
    call = run([sys.executable, "-m", "tf_bigexport", "call", "registry/split/1", "--signature", "serving_default",
                "--input-exprs", "x=np.ones((1, 256), dtype=np.float32)"], project)
    assert "Result for output key features" in call.stdout
    loaded = run([sys.executable, "-c", "import storage; from tf_bigexport import imageformat; import tensorflow as tf; "
                  "m = imageformat.load('registry/split/1'); "
                  "print(storage.USER_PACKAGE, m.signatures['serving_default'](x=tf.ones((1, 256)))['features'].shape)"],
                 project)
    assert loaded.stdout.split()[0] == "True" and "(1, 256)" in loaded.stdout
