"""Benchmark tables: the durable SQLite result store, the one ``BenchTable`` abstraction, readers for
every table format (ours, NB201, NATS-Bench), seed-to-seed reliability, and the bundled benchmark.

May import: ``core``, ``nb201``.
"""
