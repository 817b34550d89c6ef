"""Adapters translate a domain's work into Jobs and run it on the worker and process pools."""
