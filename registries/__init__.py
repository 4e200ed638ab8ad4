"""Registry adapters: tell model registries about published versions.

    from tf_bigexport.registries import RegistrationConfig, register_everywhere
    results = register_everywhere(record, RegistrationConfig(mlflow_tracking_uri="sqlite:///mlflow.db")
                                  .adapters(storage.Registry("gs://bucket/models")))

Adapters: JsonIndexAdapter (<registry>/<model>/index.json, always on) and
MlflowAdapter (MLflow Model Registry, the `mlflow` extra). Never imports
TensorFlow or Beam.
"""
from tf_bigexport.registries.adapter import (ALREADY_REGISTERED, FAILED, REGISTERED, ModelRegistryAdapter,
                                RegistrationResult, register_everywhere)
from tf_bigexport.registries.config import RegistrationConfig
from tf_bigexport.registries.json_index import JsonIndexAdapter

__all__ = ["ALREADY_REGISTERED", "FAILED", "REGISTERED", "JsonIndexAdapter", "ModelRegistryAdapter",
           "RegistrationConfig", "RegistrationResult", "register_everywhere"]
