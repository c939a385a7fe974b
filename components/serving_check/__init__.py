"""ServingCheck: loads each candidate model the way TF Serving does before it may be pushed."""
