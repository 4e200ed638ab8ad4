# The registry bucket, a temp bucket for Dataflow, the worker image repository,
# and the pipeline's service account with the least it needs.

locals {
  staging_prefix = "${var.registry_prefix}/.staging/"
  object_root    = "projects/_/buckets/${var.registry_bucket}/objects/${var.registry_prefix}/"
}

resource "google_storage_bucket" "registry" {
  name                        = var.registry_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Published versions are never overwritten by the pipeline; versioning keeps
  # every generation of the objects it does rewrite (index.json) recoverable.
  versioning {
    enabled = true
  }

  # Abandoned uploads of runs that never committed.
  lifecycle_rule {
    condition {
      age            = var.staging_max_age_days
      matches_prefix = [local.staging_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # Old generations (superseded index.json, deleted staging objects).
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "temp" {
  name                        = var.temp_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age = 14
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_artifact_registry_repository" "images" {
  location      = var.region
  repository_id = "tf-bigexport"
  format        = "DOCKER"
  description   = "Dataflow worker / flex template images of tf-bigexport (infra/dataflow/Dockerfile)"
}

resource "google_service_account" "pipeline" {
  account_id   = "tf-bigexport-pipeline"
  display_name = "tf-bigexport Dataflow workers"
}

# Dataflow needs its workers' account to hold the worker role in the project.
resource "google_project_iam_member" "dataflow_worker" {
  project = var.project
  role    = "roles/dataflow.worker"
  member  = "serviceAccount:${google_service_account.pipeline.email}"
}

# Registry: read and list everything, create new objects anywhere...
resource "google_storage_bucket_iam_member" "registry_read" {
  bucket = google_storage_bucket.registry.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_storage_bucket_iam_member" "registry_create" {
  bucket = google_storage_bucket.registry.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

# ...but delete or overwrite only what the publishing steps rewrite: staging
# uploads and record drafts, the preflight's write probe, and each model's
# index.json. Published version directories, claims and release records stay
# create-only for it.
resource "google_storage_bucket_iam_member" "registry_rewrite" {
  bucket = google_storage_bucket.registry.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.pipeline.email}"
  condition {
    title       = "staging-probe-and-index-only"
    description = "tf-bigexport rewrites only .staging/, .probe/ and <model>/index.json"
    expression  = "resource.name.startsWith(\"${local.object_root}.staging/\") || resource.name.startsWith(\"${local.object_root}.probe/\") || (resource.name.startsWith(\"${local.object_root}\") && resource.name.endsWith(\"/index.json\"))"
  }
}

resource "google_storage_bucket_iam_member" "temp_admin" {
  bucket = google_storage_bucket.temp.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.pipeline.email}"
}

resource "google_artifact_registry_repository_iam_member" "images_read" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.pipeline.email}"
}
