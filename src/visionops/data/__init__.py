"""Dataset handling: sources, validation, anonymisation, splitting and versioning."""
