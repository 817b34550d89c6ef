"""The ``gaia`` command line."""
