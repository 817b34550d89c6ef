"""Gaia validator execution core.

Importing this package does nothing but define the version: every subsystem is imported on demand.
"""

__version__ = "0.1.0"
