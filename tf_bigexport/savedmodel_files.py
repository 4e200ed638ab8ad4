"""The file names TensorFlow gives the parts of a SavedModel directory.

One definition for every layer: imageformat writes these files, storage
publishes the program file last, the pipeline reads them back. A leaf module
(it imports nothing), so the format library and the storage layer can both use
it without depending on each other.
"""

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_CPB = "saved_model.cpb"  # the image format: a chunked proto in a Riegeli file
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
FINGERPRINT_PB = "fingerprint.pb"

# The program file. TensorFlow (and TensorFlow Serving) treat a directory as a
# finished export once one of these exists, so publishers write it last. A
# split save writes the .cpb, so it is looked for first.
PROGRAM_FILES = (SAVED_MODEL_CPB, SAVED_MODEL_PB)

# Files for the serving system, not TensorFlow: TensorFlow's save never writes here and
# its loaders never read it.
ASSETS_EXTRA = "assets.extra"
# TensorFlow Serving replays the requests in this file (TFRecord, one PredictionLog
# each) when it loads the SavedModel, so the first real request finds it warm.
SERVING_WARMUP_REQUESTS = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"
