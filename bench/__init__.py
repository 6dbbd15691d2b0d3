"""Benchmarks: run on demand, side by side against the tool a user would otherwise pick; never timed in tests."""
