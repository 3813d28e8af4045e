"""rfarm's benchmarks: `python -m benchmarks` (see docs/PERFORMANCE.md)."""
