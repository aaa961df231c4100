"""Searching the space: the FlatNAS figure of merit (defined once), named objectives and what they
read, the pymoo operators on NB201 genes, the NSGA-II and exhaustive engine, fronts and hypervolume, the
search result with its tables and plot, the one-call ``run_search`` that loads surrogates and tables, the
FlatNAS loop and its baselines, and retraining of the picks.

May import: ``core``, ``nb201``, ``tables``, ``bench``, and the top-level ``surrogates`` package.
"""
