"""Production comes back: prediction records, selected images, review batches."""
