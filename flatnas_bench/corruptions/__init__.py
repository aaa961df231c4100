"""CIFAR-10-C style corruptions: the operations, their imaging helpers and frost textures, generation
of whole corruption sets in the official file layout, and the corruption metrics (mean accuracy, mCE).

May import: ``core``.
"""
