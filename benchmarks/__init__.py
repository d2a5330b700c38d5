"""Side-by-side benchmarks of a2a-scale backends, the SDK's SQL mode and a floor.

Run ``python -m benchmarks --help``. Results land in
``benchmarks/results/latest.json``, tables and plots in ``docs/``.
"""
