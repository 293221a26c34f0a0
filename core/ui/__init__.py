"""Stage 6, the dashboard's engine: plain functions the Streamlit pages call, and the figures.

``zoo`` (the shipped models, listed without torch) -> ``model_store`` (loading, uploads, training,
downloads) -> ``analysis`` (held-out data, relevance, evaluations) -> ``results`` (stored benchmark
runs) -> ``figures`` (Plotly figures). Nothing here imports Streamlit; the pages stay thin.

The names below are imported on first use (PEP 562), so that a page needing only the model store
(the Model page, the first a visitor sees) does not import LRP, zennit and torchvision with it.
"""
from __future__ import annotations

from core import lazy

_SOURCES = {
    "core.models.cards": ("shipped_checkpoints",),
    "core.ui.zoo": ("DEFAULT_MODEL", "PREFERRED_MODEL", "ZooEntry", "default_model_key", "model_zoo"),
    "core.ui.model_store": ("LoadedModel", "MAX_UPLOAD_MB", "ROOT", "TRAINABLE_ARCHS",
                            "UPLOAD_EXTRAS", "UPLOAD_SUFFIXES", "analysable_layers", "default_epochs",
                            "device_label", "export_unlearned", "layer_rows", "load_shipped",
                            "model_file_format", "model_graph", "parameter_count",
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
__getattr__, __dir__, __all__ = lazy.exports(__name__, _SOURCES)
