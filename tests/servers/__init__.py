"""Test support: throwaway Redis and PostgreSQL servers and the pytest fixtures that hand them out.

Imported by tests/conftest.py as the top-level package ``servers`` (tests/ is on sys.path under
pytest's default import mode). Modules: ``redis`` and ``postgres`` (the servers, stdlib only),
``fixtures`` (pytest fixtures), ``policy`` (skip locally / fail under CI), ``external`` (servers
given by URL in the environment), ``binaries`` and ``ports``.
"""
