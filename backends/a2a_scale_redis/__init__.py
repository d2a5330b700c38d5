"""The Redis backend plugin for a2a-scale (Streams and Pub/Sub)."""
