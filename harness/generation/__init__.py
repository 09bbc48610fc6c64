"""Generative decoders: prompt processing, decoding and token parity, measured in a worker."""
