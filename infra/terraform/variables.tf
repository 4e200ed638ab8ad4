variable "project" {
  description = "GCP project that runs the Dataflow jobs and owns the buckets."
  type        = string
}

variable "region" {
  description = "Region of the buckets, the image repository and the Dataflow jobs."
  type        = string
  default     = "us-central1"
}

variable "registry_bucket" {
  description = "Bucket that holds the model registry (gs://<registry_bucket>/<registry_prefix>/<model>/<version>/)."
  type        = string
}

variable "registry_prefix" {
  description = "Folder of the registry inside the bucket; the pipeline's --registry is gs://<registry_bucket>/<registry_prefix>."
  type        = string
  default     = "models"
}

variable "temp_bucket" {
  description = "Bucket for Dataflow temp/staging files and the run outcomes (--temp_location gs://<temp_bucket>/tmp)."
  type        = string
}

variable "staging_max_age_days" {
  description = "Uploads under <registry_prefix>/.staging/ older than this are deleted: a committed job removes its own, so only abandoned runs leave any."
  type        = number
  default     = 7
}

variable "noncurrent_version_days" {
  description = "Overwritten or deleted object generations (index.json rewrites, cleaned-up staging) are kept this long."
  type        = number
  default     = 30
}
