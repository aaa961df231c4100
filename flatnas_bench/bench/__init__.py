"""Running many candidates: the bench driver (skip done rows, commit each result), the serial, local and
Ray executors with their workers, run planning and progress reporting.

May import: ``core``, ``nb201``, ``corruptions``, ``engine``, ``tables``.
"""
