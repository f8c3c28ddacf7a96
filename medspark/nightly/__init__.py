"""The nightly batch's pure parts: its settings, the lake lock and progress reporting. The
orchestration itself (one Spark session, the jobs in order) is `medspark.spark.nightly`."""
