"""The names every benchmark table shares: run columns, metrics and their labels, reference rows,
and the training-data column read the same way from every runs.csv, old or new.

Training data is two columns: ``uses_training_data`` (bool: did the method read training images?)
and ``training_data`` (the label saying which, e.g. "retain train"). Files written before the split
hold the label in ``uses_training_data``; :func:`training_data_columns` reads both layouts.
"""
from __future__ import annotations

RUN_COLUMNS = ["profile", "dataset", "arch", "method", "forget_class", "seed", "forget_acc", "retain_acc",
               "mia_entropy", "mia_loss_gap", "seconds", "peak_mem_mb", "relearn_steps", "probe_recall",
               "probe_auc", "uses_training_data", "training_data", "per_class"]
EXTRA_COLUMNS = ["overall_acc", "relearn_reached", "relearn_reached_90", "cached", "eval_size", "pool_size", "device",
                 "eval_seconds", "details"]
METRICS = ["forget_acc", "retain_acc", "mia_entropy", "mia_loss_gap", "relearn_steps", "probe_recall", "probe_auc",
           "seconds", "peak_mem_mb", "forget_acc_train", "retain_acc_train", "relearn_steps_90",
           "mia_entropy_auc", "mia_loss_share", "mia_loss_auc", "mia_confidence_share", "mia_confidence_auc"]
LABELS = {"forget_acc": "forget acc", "retain_acc": "retain acc", "mia_entropy": "MIA (entropy)",
          "mia_loss_gap": "MIA loss gap", "relearn_steps": "relearn steps", "probe_recall": "probe recall",
          "probe_auc": "probe AUC", "seconds": "seconds", "peak_mem_mb": "peak MB",
          "forget_acc_train": "forget acc (train)", "retain_acc_train": "retain acc (train)",
          "relearn_steps_90": "relearn to 90 %", "mia_entropy_auc": "MIA entropy AUC", "mia_loss_share": "MIA (loss)",
          "mia_loss_auc": "MIA loss AUC", "mia_confidence_share": "MIA (confidence)",
          "mia_confidence_auc": "MIA confidence AUC"}

REFERENCE = "retrain"                      # the row every method is compared with
ORIGINAL = "original"                      # the model before unlearning
ORIGINAL_DATA = "n/a (the original model)"
ORIGINAL_DESCRIPTION = "the model before unlearning (the starting point, not a method)"

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


def uses_training(label) -> bool:
    """Whether a training-data label (or an already boolean value) means training images were read.

    Labels naming a training split ("retain train", "forget train", "retain+forget train") are
    True; "none", "none (analysis pool only)" and "n/a (the original model)" are False."""
    if isinstance(label, bool):
        return label
    if _missing(label):
        return False
    text = str(label).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return "train" in text.replace("n/a", "")


def _missing(value) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


def _is_flag(value) -> bool:
    return not _missing(value) and (isinstance(value, bool) or str(value).strip().lower() in _TRUE | _FALSE)


def training_data_columns(df):
    """``df`` (a runs or summary DataFrame) with ``uses_training_data`` as bool and ``training_data``
    as its label, whichever layout the file had. A label missing from a file that stored only the
    flag comes from the method registry (``core.bench.methods.DATA_USED``)."""
    from core.bench.methods import DATA_USED

    df = df.copy()
    raw = df["uses_training_data"] if "uses_training_data" in df.columns else None
    labels = df["training_data"] if "training_data" in df.columns else None
    methods = df["method"] if "method" in df.columns else [None] * len(df)
    out_labels, out_flags = [], []
    for i in range(len(df)):
        value = raw.iloc[i] if raw is not None else None
        label = labels.iloc[i] if labels is not None else None
        method = methods.iloc[i] if hasattr(methods, "iloc") else methods[i]
        if _missing(label):
            label = None if _missing(value) or _is_flag(value) else str(value)
        if label is None:
            label = ORIGINAL_DATA if method == ORIGINAL else DATA_USED.get(method)
        flag = uses_training(value) if _is_flag(value) else uses_training(label)
        out_labels.append(label if label is not None else ("training data" if flag else "none"))
        out_flags.append(bool(flag))
    df["uses_training_data"] = out_flags
    df["training_data"] = out_labels
    return df
