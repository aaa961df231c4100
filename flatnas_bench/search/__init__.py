"""Searching the space: named objectives (one FoM), the NSGA-II and exhaustive engine with fronts and
hypervolume, the FlatNAS loop and its baselines, and retraining of the picks.

May import: ``core``, ``nb201``, ``tables``, ``bench``, and the top-level ``surrogates`` package.
"""
