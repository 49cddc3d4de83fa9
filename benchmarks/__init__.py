"""Benchmarks for ``make bench`` (``python -m benchmarks``).

Each ``benchmarks/bench_*.py`` module defines ``main()``; the runner in :mod:`benchmarks.__main__`
imports them in name order and calls each one. Benchmarks print figures; they never assert on time.
"""
