"""Unlearning Lab engine: data -> models -> compute -> relevance -> paths -> perturb -> evaluate -> figures.

Importable without Streamlit. Every user-facing failure raises :class:`core.errors.UserError`
carrying one clear sentence; the CLI turns it into exit code 2.
"""
