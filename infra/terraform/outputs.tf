output "registry_uri" {
  description = "Pass as --registry."
  value       = "gs://${google_storage_bucket.registry.name}/${var.registry_prefix}"
}

output "temp_location" {
  description = "Pass as --temp_location (and --staging_location with /staging)."
  value       = "gs://${google_storage_bucket.temp.name}/tmp"
}

output "service_account_email" {
  description = "Pass as --service_account_email."
  value       = google_service_account.pipeline.email
}

output "image_repository" {
  description = "Push infra/dataflow/Dockerfile here; pass the image as --sdk_container_image."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}
