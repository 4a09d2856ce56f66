"""Where the platform's files live, local paths and `s3://` alike (`storage.files`): shared by
the batch chain, serving and monitoring, so it imports nothing of either."""
