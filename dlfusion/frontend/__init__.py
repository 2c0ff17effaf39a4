"""The ONNX frontend: ONNX models (binary or text syntax) into `nn` IR."""

from dlfusion.frontend.onnx_import import import_model, import_onnx_stream, load_onnx

__all__ = ["import_model", "import_onnx_stream", "load_onnx"]
