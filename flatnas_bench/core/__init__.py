"""The shared vocabulary every other layer speaks: user-facing errors, the training protocol and its
hash, the result row and its operations, the metric-name grammar, the name-based registry type, and
machine facts (usable CPU cores).

Imports nothing else of the project.
"""
