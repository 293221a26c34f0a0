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
                              image_relevance, jaccard, unit_detail, membership_scores, path_overlap, test_evaluation)
from core.ui.speed import EvalCaches, MemoAnalyzer, explorer_from
from core.ui.share import read_params, write_params
from core.ui.results import BENCH_COLUMNS, bench_run_files, load_runs

__all__ = ["BENCH_COLUMNS", "ClassRelevance", "DEFAULT_MODEL", "LoadedModel", "MAX_UPLOAD_MB", "POOL_PER_CLASS", "ROOT", "SPLIT_SEED", "TRAINABLE_ARCHS", "UPLOAD_EXTRAS", "UPLOAD_SUFFIXES", "ZooEntry", "analysable_layers", "bench_run_files", "class_relevance", "default_epochs", "model_graph", "unit_detail", "read_params", "write_params", "default_model_key", "EvalCaches", "MemoAnalyzer", "explorer_from", "device_label", "display_images", "erasure_summary", "eval_logits", "evaluation_from_logits", "export_unlearned", "heldout_data", "image_relevance", "jaccard", "layer_rows", "load_runs", "load_shipped", "membership_scores", "model_file_format", "model_zoo", "parameter_count", "path_overlap", "read_uploaded_checkpoint", "shipped_checkpoints", "test_evaluation", "train_new_model", "trainable_datasets", "unit_word"]
