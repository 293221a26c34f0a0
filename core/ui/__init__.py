"""Stage 6, the dashboard's engine: plain functions the Streamlit pages call, and the figures.

``model_store`` (the zoo, uploads, training, downloads) -> ``analysis`` (held-out data, relevance,
evaluations) -> ``results`` (stored benchmark runs) -> ``figures`` (Plotly figures). Nothing here
imports Streamlit; the pages stay thin.
"""
from core.models.checkpoints import shipped_checkpoints
from core.ui.model_store import (DEFAULT_MODEL, LoadedModel, MAX_UPLOAD_MB, ROOT, TRAINABLE_ARCHS,
                                 UPLOAD_EXTRAS, UPLOAD_SUFFIXES, ZooEntry, analysable_layers, default_epochs,
                                 default_model_key, device_label, export_unlearned, layer_rows, load_shipped, model_file_format,
                                 model_graph, model_zoo, parameter_count, read_uploaded_checkpoint, train_new_model,
                                 trainable_datasets, unit_word)
from core.ui.analysis import (ClassRelevance, POOL_PER_CLASS, SPLIT_SEED, class_relevance, display_images,
                              erasure_summary, eval_logits, evaluation_from_logits, heldout_data,
                              image_relevance, jaccard, membership_scores, path_overlap, test_evaluation,
                              unit_detail)
from core.ui.results import (bench_run_files, compare_table, load_runs, model_choices, prediction_matrices,
                             reference_note)
from core.ui.share import read_params, write_params
from core.ui.speed import EvalCaches, MemoAnalyzer, explorer_from

__all__ = ["ClassRelevance", "DEFAULT_MODEL", "EvalCaches", "LoadedModel", "MAX_UPLOAD_MB", "MemoAnalyzer",
           "POOL_PER_CLASS", "ROOT", "SPLIT_SEED", "TRAINABLE_ARCHS", "UPLOAD_EXTRAS", "UPLOAD_SUFFIXES",
           "ZooEntry", "analysable_layers", "bench_run_files", "class_relevance", "compare_table",
           "default_epochs", "default_model_key", "device_label", "display_images", "erasure_summary",
           "eval_logits", "evaluation_from_logits", "explorer_from", "export_unlearned", "heldout_data",
           "image_relevance", "jaccard", "layer_rows", "load_runs", "load_shipped", "membership_scores",
           "model_choices", "model_file_format", "model_graph", "model_zoo", "parameter_count",
           "path_overlap", "prediction_matrices", "read_params", "read_uploaded_checkpoint", "reference_note",
           "shipped_checkpoints", "test_evaluation", "train_new_model", "trainable_datasets", "unit_detail",
           "unit_word", "write_params"]
