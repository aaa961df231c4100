"""CIFAR-10-C style corruptions, one concept per module: ``operations`` (the 19 operations, their registry
and :func:`~flatnas_bench.corruptions.operations.corrupt`), ``imaging`` (their numeric helpers),
``textures`` (frost photographs), ``generate`` (whole sets, in memory or in the official file layout),
``grid`` (pictures), ``robustness`` (the file layout reader and the corruption metrics: mean accuracy, mCE).

May import: ``core``.
"""
