"""Model files from elsewhere, read into one standard form and written back in their own format.

The standard form is a ``torch.fx.GraphModule`` of real ``nn.Conv2d`` / ``nn.Linear`` /
``nn.BatchNorm2d`` modules named by module path, taking any batch size.

``kinds`` (what a file is; refusing pickles) -> ``standard`` (building and verifying the standard
form) -> ``onnx_graph`` / ``export_graph`` (the two importers) -> ``loading`` -> ``writing``.
"""
from core.models.formats.kinds import file_kind, is_graph_file, refuse_unsafe
from core.models.formats.loading import input_shape_of, load_model_file
from core.models.formats.writing import save_exported, save_onnx

__all__ = ["file_kind", "input_shape_of", "is_graph_file", "load_model_file", "refuse_unsafe", "save_exported",
           "save_onnx"]
