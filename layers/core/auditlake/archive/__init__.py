"""The Parquet archive: the compactor, its Arrow schema, partition locks, the S3 -> SQS trigger."""
