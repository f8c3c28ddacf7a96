"""medspark: distributed batch processing of medical image collections on Apache Spark."""

__version__ = "0.1.0"
