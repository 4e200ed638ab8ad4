"""Job specs, pipeline options, the Beam graph and the tf-bigexport CLI (see pipeline/cli.py)."""
