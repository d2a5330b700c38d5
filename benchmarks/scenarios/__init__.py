"""The scenarios: store, latency, fanout, e2e, aws."""
