"""Batch inference on a published version with Beam's RunInference.

Reads examples (JSON lines: {"id": ..., "<input name>": [...]}), runs one
signature of the version on them, and writes one JSON line per prediction:

    python docs/examples/batch_inference.py \
        --model_uri gs://my-registry/models/split/1 --signature serving_default \
        --input examples.jsonl --output predictions/part \
        --runner DataflowRunner --project ... --region ... --temp_location gs://...

Any Beam pipeline option can follow; without --runner it runs locally on the
DirectRunner. The version may be saved_model.pb, saved_model.cpb or the
servable form, on local disk, GCS or S3.
"""
from __future__ import annotations

import argparse
import json

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from tf_bigexport.inference import SavedModelHandlerNumpy


def parse_example(line: str) -> tuple[str, dict[str, np.ndarray]]:
    """(id, {input name: array}) from one JSON line."""
    record = json.loads(line)
    key = str(record.pop("id"))
    return key, {name: np.asarray(value, dtype=np.float32) for name, value in record.items()}


def format_prediction(keyed) -> str:
    key, result = keyed
    return json.dumps({"id": key, **{name: np.asarray(value).tolist() for name, value in result.inference.items()}})


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_uri", required=True, help="a published version directory")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--input", required=True, help="JSON lines of examples")
    parser.add_argument("--output", required=True, help="output prefix for the predictions")
    parser.add_argument("--max_batch_size", type=int, default=64)
    args, beam_args = parser.parse_known_args(argv)

    handler = KeyedModelHandler(SavedModelHandlerNumpy(
        args.model_uri, signature=args.signature, max_batch_size=args.max_batch_size))
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        _ = (pipeline
             | "ReadExamples" >> beam.io.ReadFromText(args.input)
             | "Parse" >> beam.Map(parse_example)
             | "Predict" >> RunInference(handler)
             | "Format" >> beam.Map(format_prediction)
             | "WritePredictions" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl"))


if __name__ == "__main__":
    run()
