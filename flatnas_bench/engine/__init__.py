"""The training hot path for one candidate: dataset readers, cache and splits, the data resident on
the device, SAM, training, flatness R and loss sharpness, the candidate job that turns an arch into a
result row, and stored weights.

May import: ``core``, ``nb201``, ``corruptions``.
"""
