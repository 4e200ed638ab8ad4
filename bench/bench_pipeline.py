"""The demo export through Beam (DirectRunner) against the same stages called
directly, one job after another, in the same process and run.

  direct  pipeline.direct.export_directly for each demo job: trace and save
          (in a process of their own), fingerprint, stage, verify (reload in
          a process of its own), commit
  beam    tf_bigexport.pipeline.export.run_export on the same jobs (fresh registry)

Prints each stage's share of the direct time and the ratio beam / direct
(target <= 1.3). Both start their TensorFlow processes the same way, so
neither has a warm-up advantage.
Models: the demo's (MobileNet 96x96 alpha 0.25, vocabulary module, 4 MiB
split model); local registry directories.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

TARGET = 1.3


def main() -> None:
    from tf_bigexport.pipeline import logs
    logs.configure(verbose=False)
    import logging
    logging.getLogger(logs.LOGGER_NAME).setLevel(logging.WARNING)

    from tf_bigexport.pipeline.demo_models import demo_jobs
    from tf_bigexport.pipeline.direct import STAGES, export_directly
    from tf_bigexport.pipeline.export import run_export
    from tf_bigexport.pipeline.jobs import parse_jobs

    scratch = tempfile.mkdtemp(prefix="bench-pipeline-")
    try:
        direct_jobs = parse_jobs(demo_jobs(os.path.join(scratch, "direct")), source="bench")
        started = time.perf_counter()
        states = [export_directly(job, work_root=os.path.join(scratch, "direct-work"), run_id="direct")
                  for job in direct_jobs]
        direct_seconds = time.perf_counter() - started

        beam_jobs = parse_jobs(demo_jobs(os.path.join(scratch, "beam")), source="bench")
        started = time.perf_counter()
        outcomes = run_export(beam_jobs, ["--work_dir", os.path.join(scratch, "beam-work")])
        beam_seconds = time.perf_counter() - started
        failed = [o for o in outcomes if o["status"] != "published"]
        if failed:
            raise RuntimeError(f"beam run failed: {failed}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    per_stage = {stage: sum(s.seconds.get(stage, 0.0) for s in states) for stage in STAGES}
    stage_sum = sum(per_stage.values())
    print(f"{'stage':<12} {'direct s':>9} {'share':>7}")
    for stage in STAGES:
        print(f"{stage:<12} {per_stage[stage]:>9.2f} {per_stage[stage] / stage_sum:>7.1%}")
    print(f"{'sum':<12} {stage_sum:>9.2f}")
    print()
    ratio = beam_seconds / direct_seconds
    print(f"{'run':<28} {'seconds':>8}")
    print(f"{'direct (3 jobs, no Beam)':<28} {direct_seconds:>8.2f}")
    print(f"{'beam DirectRunner (3 jobs)':<28} {beam_seconds:>8.2f}")
    print(f"ratio beam / direct = {ratio:.2f} (target <= {TARGET}) {'OK' if ratio <= TARGET else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
