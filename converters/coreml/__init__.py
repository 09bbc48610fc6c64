"""Core ML conversion: the coremltools recipes, stateful decoders and input specs."""
