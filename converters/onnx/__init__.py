"""ONNX conversion: the torch exporter, ONNX Runtime quantization recipes and decoder export."""
