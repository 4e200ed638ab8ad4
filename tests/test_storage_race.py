"""Publishers racing for versions: exactly one wins a version; next-integer gives unique numbers.

GCS through emulators.GcsConformanceProxy (create-only as GCS has it), S3 on
moto, local files by hard links.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tf_bigexport.storage import Manifest, VersionConflictError, VersionPolicy
from storage_testkit import export_files, make_export, read_tree

REPO = Path(__file__).resolve().parents[1]


def _race(n, action):
    """Run action(i) in n threads released together; returns [(i, result | exception)]."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_publishers_one_version(registry_target, tmp_path):
    exports = [make_export(tmp_path / f"e{i}", seed=i) for i in range(2)]
    reg = registry_target.registry()
    results = _race(2, lambda i: reg.publish(str(exports[i]), "m", VersionPolicy.explicit(7),
                                             {}, f"job-{i}"))
    winners = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert len(losers) == 1 and isinstance(losers[0], VersionConflictError), results
    assert "version 7 of model 'm'" in str(losers[0])
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    assert read_tree(fs, f"{root}/m/7") == export_files(exports[winners[0]])
    assert reg.verify_version("m", 7) == []
    assert reg.read_release_record("m", 7).job_key == f"job-{winners[0]}"


def claim(reg, model, policy, job_key):
    return reg.publication(model, job_key, Manifest()).claim(policy)


def test_claim_races_have_one_winner_each(registry_target):
    reg = registry_target.registry()
    for version in range(1, 6):
        results = _race(3, lambda i: claim(reg, "m", VersionPolicy.explicit(version), f"job-{version}-{i}"))
        winners = [i for i, r in enumerate(results) if r == version]
        assert len(winners) == 1, (version, results)
        assert all(isinstance(r, VersionConflictError) and f"version {version} of model 'm'" in str(r)
                   for r in results if r != version), results
        assert reg.claims.owner("m", version) == f"job-{version}-{winners[0]}"


def test_next_integer_race_gives_unique_versions(registry_target, tmp_path):
    exports = [make_export(tmp_path / f"e{i}", seed=10 + i, big=20_000) for i in range(4)]
    reg = registry_target.registry()
    results = _race(4, lambda i: reg.publish(str(exports[i]), "m", VersionPolicy.next_integer(),
                                             {}, f"job-{i}"))
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.version for r in results) == [1, 2, 3, 4]
    fs = registry_target.filesystem()
    root = fs._strip_protocol(registry_target.uri).rstrip("/")
    for i, record in enumerate(results):
        assert record.job_key == f"job-{i}"
        assert read_tree(fs, f"{root}/m/{record.version}") == export_files(exports[i])
    assert [v["version"] for v in reg.read_index("m")["versions"]] == [1, 2, 3, 4]


CLAIMER = r"""
import json, sys
from tf_bigexport.storage import Manifest, Registry, VersionPolicy, VersionConflictError
a = json.loads(sys.argv[1])
reg = Registry(a["uri"], storage_options=a["options"])
sys.stdin.readline()  # start line: all processes released together
out = {}
for v in range(1, 6):
    try:
        out[v] = reg.publication("m", f"{a['job']}-v{v}", Manifest()).claim(VersionPolicy.explicit(v))
    except VersionConflictError as exc:
        out[v] = str(exc)
print(json.dumps(out))
"""


def test_claim_race_between_processes(registry_target):
    env = dict(os.environ, PYTHONPATH=str(REPO), GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")
    procs = []
    for i in range(3):
        args = {"uri": registry_target.uri, "options": registry_target.storage_options, "job": f"proc-{i}"}
        procs.append(subprocess.Popen([sys.executable, "-c", CLAIMER, json.dumps(args)], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for p in procs:  # after all have started (and imported), release them
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    reg = registry_target.registry()
    for v in range(1, 6):
        won = [i for i, out in enumerate(outs) if out[str(v)] == v]
        assert len(won) == 1, (v, outs)
        assert reg.claims.owner("m", v) == f"proc-{won[0]}-v{v}"
        for i, out in enumerate(outs):
            if i not in won:
                assert f"version {v} of model 'm'" in out[str(v)]
