"""Aggregation of runs, markdown tables and the performance page."""
