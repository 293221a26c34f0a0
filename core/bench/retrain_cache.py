"""Retrained reference models cached on disk (``<cache_dir>/bench/retrain``).

Keyed by everything that determines them (dataset, arch, forget class, seed, the training recipe
and sample, the training data's size and label sum), so a rerun skips retraining and reports the
seconds measured when the model was trained. An entry is two files written atomically (weights,
then the JSON that makes the entry visible); :func:`retrain_lock` serialises the check-train-store of
one key across processes (Ray workers, two bench commands sharing the cache), so a key is trained
once and never again while its entry is present.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from core.bench.methods import UnlearnOutcome
from core.bench.plan import Case
from core.data.cache import cache_dir
from core.models.compute import model_device


def _retrain_key(case: Case) -> dict:
    config = dataclasses.replace(case.train_config, seed=case.seed)
    if case.budget.retrain_epochs is not None:
        config = dataclasses.replace(config, epochs=case.budget.retrain_epochs)
    return {"dataset": case.dataset, "arch": case.arch, "forget_class": case.forget_class, "seed": case.seed,
            "train_config": config.to_dict(), "samples": case.budget.retrain_samples, "n_train": len(case.train),
            "labels_sum": int(case.train.labels.sum()), "format": 1}


def _retrain_cache_path(case: Case) -> Path:
    key = _retrain_key(case)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{case.dataset.replace(':', '_').replace('/', '_')}-{case.arch}-c{case.forget_class}-s{case.seed}-{digest}"
    return cache_dir() / "bench" / "retrain" / f"{name}.safetensors"


def retrain_lock(case: Case):
    """An inter-process lock (``filelock``) on the cache entry of ``case``: hold it from the cache
    check to the store, and a second process asking for the same key waits and then finds it."""
    from filelock import FileLock

    path = _retrain_cache_path(case)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.stem}.lock")))


def _load_retrain(case: Case, model: nn.Module) -> tuple[UnlearnOutcome, float] | None:
    from safetensors.torch import load_file

    from core.models.checkpoints import load_weights
    from core.models.registry import build_model

    path = _retrain_cache_path(case)
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        fresh = build_model(case.arch, case.eval_set.info.num_classes, case.eval_set.info.input_shape, seed=case.seed)
        load_weights(fresh, load_file(str(path)), path.name)
    except Exception:  # noqa: BLE001 - a broken cache entry is simply retrained
        return None
    outcome = UnlearnOutcome(fresh.to(model_device(model)).eval(), float(meta["seconds"]), meta["uses_training_data"],
                             {**meta.get("details", {}), "cached_from": meta.get("created", "")})
    return outcome, float(meta["peak_mem_mb"])


def _store_retrain(case: Case, outcome: UnlearnOutcome, peak_mb: float, device: torch.device) -> None:
    from safetensors.torch import save_file

    path = _retrain_cache_path(case)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in outcome.model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    meta = {"key": _retrain_key(case), "seconds": outcome.seconds, "peak_mem_mb": peak_mb, "device": str(device),
            "uses_training_data": outcome.uses_training_data, "details": outcome.details,
            "created": dt.datetime.now().isoformat(timespec="seconds")}
    tmp_meta = path.with_name(f".{path.stem}.json.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, path.with_suffix(".json"))
