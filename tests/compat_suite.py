"""The tests `make test-compat` (tools/compat.py) runs against every supported TensorFlow.

Format and conformance: save, load, enable(), TensorFlow's C++ reading our
.cpb, the merged proto equal to TensorFlow's own save on the stable
fingerprint hashes; the servable form loaded by stock TensorFlow (Python,
saved_model_cli, C++ LoadSavedModel), TensorFlow's own Python loaders
(TFSMLayer) on a .cpb, and the C++ loader (cc/) built against that
TensorFlow's wheel; storage's retry layer on every Python, the job lines of
Beam's worker processes where Beam's GCP extra is absent, Keras models
with several inputs exported by the pipeline (Keras 2 on TensorFlow 2.15),
and TensorFlow Serving's warmup requests written and replayed.
conftest.py marks their tests `compat`; tools/compat.py passes these files
(plus INSTALLED_FILES) to pytest, so no other test module (and its
dependencies: emulators, Terraform parsing) is even collected there.
None of them may need an emulator or a dev-only package.
"""

COMPAT_FILES = frozenset({
    "test_save_load.py",
    "test_checkpoint_shards.py",
    "test_tf_reads_our_cpb.py",
    "test_tf_support.py",
    "test_chunked_file.py",
    "test_deferred_constants.py",
    "test_merger.py",
    "test_splitter.py",
    "test_riegeli_roundtrip.py",
    "test_riegeli_layout.py",
    "test_riegeli_hashing.py",
    "test_highwayhash.py",
    "test_servable.py",
    "test_tf_loaders.py",
    "test_cc_loader.py",
    "test_storage_retry.py",
    # Beam's multi_processing workers in an environment without Beam's GCP extra, as users have it.
    "test_job_progress.py",
    # Keras models with several inputs through the pipeline: Keras 2 (TensorFlow 2.15) and Keras 3.
    "test_keras_inputs.py",
    # TensorFlow Serving's warmup file, written and replayed with each TensorFlow's TFRecord and TensorProto.
    "test_serving_warmup.py",
})

# Checks of the installed wheel itself (marked `installed`; deselected by default).
INSTALLED_FILES = frozenset({"test_installed_wheel.py"})
