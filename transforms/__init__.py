"""Beam stages of the export, one module per stage: trace, save, fingerprint, stage, verify, commit."""
