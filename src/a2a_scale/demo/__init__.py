"""The customer-service demo: an intent agent, specialists and the story."""

from a2a_scale.demo.runner import DemoFailure, DemoResult, Narrator, run_demo

__all__ = ['DemoFailure', 'DemoResult', 'Narrator', 'run_demo']
