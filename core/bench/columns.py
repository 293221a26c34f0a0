"""The names every benchmark table shares: run columns, metrics and their labels, reference rows."""
from __future__ import annotations

RUN_COLUMNS = ["profile", "dataset", "arch", "method", "forget_class", "seed", "forget_acc", "retain_acc",
               "mia_entropy", "mia_loss_gap", "seconds", "peak_mem_mb", "relearn_steps", "probe_recall",
               "probe_auc", "uses_training_data", "per_class"]
EXTRA_COLUMNS = ["overall_acc", "relearn_reached", "cached", "eval_size", "pool_size", "device", "eval_seconds",
                 "details"]
METRICS = ["forget_acc", "retain_acc", "mia_entropy", "mia_loss_gap", "relearn_steps", "probe_recall", "probe_auc",
           "seconds", "peak_mem_mb"]
LABELS = {"forget_acc": "forget acc", "retain_acc": "retain acc", "mia_entropy": "MIA (entropy)",
          "mia_loss_gap": "MIA loss gap", "relearn_steps": "relearn steps", "probe_recall": "probe recall",
          "probe_auc": "probe AUC", "seconds": "seconds", "peak_mem_mb": "peak MB"}

REFERENCE = "retrain"                      # the row every method is compared with
ORIGINAL = "original"                      # the model before unlearning
ORIGINAL_DATA = "n/a (the original model)"
