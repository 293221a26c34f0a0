"""Stage 6, the dashboard's engine: plain functions the Streamlit pages call, and the figures.

``model_store`` (the zoo, uploads, training, downloads) -> ``analysis`` (held-out data, relevance,
evaluations) -> ``results`` (stored benchmark runs) -> ``figures`` (Plotly figures). Nothing here
imports Streamlit; the pages stay thin.

The names below are imported on first use (PEP 562), so that a page needing only the model store
(the Model page, the first a visitor sees) does not import LRP, zennit and torchvision with it.
"""
from __future__ import annotations

import importlib

_SOURCES = {
    "core.models.checkpoints": ("shipped_checkpoints",),
    "core.ui.model_store": ("DEFAULT_MODEL", "LoadedModel", "MAX_UPLOAD_MB", "ROOT", "TRAINABLE_ARCHS",
                            "UPLOAD_EXTRAS", "UPLOAD_SUFFIXES", "ZooEntry", "analysable_layers", "default_epochs",
                            "default_model_key", "device_label", "export_unlearned", "layer_rows", "load_shipped",
                            "model_file_format", "model_graph", "model_zoo", "parameter_count",
                            "read_uploaded_checkpoint", "train_new_model", "trainable_datasets", "unit_word"),
    "core.ui.analysis": ("ClassRelevance", "POOL_PER_CLASS", "SPLIT_SEED", "class_relevance", "display_images",
                         "erasure_summary", "evaluation_from_logits", "heldout_data",
                         "image_relevance", "jaccard", "membership_scores", "path_overlap", "test_evaluation",
                         "unit_detail"),
    "core.ui.results": ("bench_run_files", "compare_table", "load_runs", "model_choices", "prediction_matrices",
                        "reference_note"),
    "core.ui.share": ("read_params", "write_params"),
    "core.ui.speed": ("EvalCaches", "MemoActivations", "MemoAnalyzer", "explorer_from", "step_neighbours"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'core.ui' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
