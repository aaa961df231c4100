"""The ``flatnas-bench`` command line: a thin typer layer over :mod:`flatnas_bench` and :mod:`surrogates`."""
