"""Stage 1, data: datasets as normalised :class:`ImageSet` tensors, and the held-out split.

Unlearning only ever sees an :class:`AnalysisPool`, a slice of the *test* split made by
:func:`split_heldout`; the rest of the test split is kept back for evaluation.

``info`` (what a dataset is) -> ``sets`` (image sets and the split) -> ``catalog`` (loading by name)
-> ``loaders`` (file layouts; ``torchvision_sets`` holds the torchvision classes they read with,
imported on first use) -> ``cache`` (decoded data on disk).
"""
from __future__ import annotations

from core import lazy

_SOURCES = {
    'core.data.cache': ('cache_dir',),
    'core.data.catalog': ('dataset_available', 'dataset_info', 'load_split', 'resolve_data_dir'),
    'core.data.info': ('DATASETS', 'IMAGEFOLDER_PREFIX', 'SPLITS', 'DatasetInfo'),
    'core.data.sets': ('AnalysisPool', 'ImageSet', 'require_analysis_pool', 'split_heldout'),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _SOURCES)
