"""DataGate: schema anomalies and drift against the previous span stop the run before training."""
