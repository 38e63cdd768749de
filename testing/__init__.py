"""Fixtures for tests and demos, beside the library: PyTorch reference models built locally (no downloads).

Imported by tests/, the quickstart / main job and experiments.compare_torch; never by liteframe_jax.
"""
