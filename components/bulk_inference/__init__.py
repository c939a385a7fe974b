"""Batch inference over a folder of new images: the pipeline's BulkInferrer branch."""
