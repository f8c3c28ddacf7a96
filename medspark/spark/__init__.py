"""The Spark shell: listing, ingest over partitions, and pyspark.ml stages."""
