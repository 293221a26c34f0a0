"""Stage 1, data: datasets as normalised :class:`ImageSet` tensors, and the held-out split.

Unlearning only ever sees an :class:`AnalysisPool`, a slice of the *test* split made by
:func:`split_heldout`; the rest of the test split is kept back for evaluation.

``info`` (what a dataset is) -> ``sets`` (image sets and the split) -> ``catalog`` (loading by name)
-> ``loaders`` (file layouts; ``torchvision_sets`` holds the torchvision classes they read with,
imported on first use) -> ``cache`` (decoded data on disk).
"""
from core.data.cache import cache_dir
from core.data.catalog import dataset_available, dataset_info, load_split, resolve_data_dir
from core.data.info import DATASETS, IMAGEFOLDER_PREFIX, SPLITS, DatasetInfo
from core.data.sets import AnalysisPool, ImageSet, require_analysis_pool, split_heldout

__all__ = ["DATASETS", "IMAGEFOLDER_PREFIX", "SPLITS", "AnalysisPool", "DatasetInfo", "ImageSet", "cache_dir",
           "dataset_available", "dataset_info", "load_split", "require_analysis_pool", "resolve_data_dir",
           "split_heldout"]
