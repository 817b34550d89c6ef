"""Example task modules, runnable with ``gaia worker --tasks gaia.examples.demo``."""
