"""Ingest core without Spark: one file's bytes -> catalog, pixel and quarantine records."""
