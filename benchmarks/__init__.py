"""Benchmarks (not tests): ``make bench`` or ``python -m benchmarks [name ...]``.

Each module ``benchmarks/<name>.py`` exposes ``run()`` (plain or async) returning rows, each a
dict of column -> value; the runner prints one table per module and saves every row to
``.bench/results.json``.
"""
