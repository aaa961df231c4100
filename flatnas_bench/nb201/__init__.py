"""The NAS-Bench-201 cell space: arch strings, isomorphism classes and canonical forms, the TinyNetwork
macro skeleton, exact parameter and MAC counts, and the feature encodings surrogates learn from.

May import: ``core``.
"""
