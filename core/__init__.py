"""Unlearning Lab's engine, one package per stage of the pipeline:

1. :mod:`core.data`         datasets as normalised tensors; the held-out analysis pool
2. :mod:`core.models`       architectures, checkpoints and imported files; the model as a graph
3. :mod:`core.attribution`  LRP relevance of hidden units, and the neuronal path of a class
4. :mod:`core.unlearning`   perturbing the path, erasing the class direction, relabelling
5. :mod:`core.metrics`      accuracy, membership inference, probes, relearning
6. :mod:`core.ui`           figures and the dashboard's plain functions
7. :mod:`core.bench`        methods compared on a grid of cases, their report and figures

:mod:`core.cli` is the command line (``python -m core``). Importable without Streamlit. Every
user-facing failure raises :class:`core.errors.UserError` carrying one clear sentence; the CLI turns
it into exit code 2.
"""
