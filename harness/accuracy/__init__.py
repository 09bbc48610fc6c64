"""Accuracy against the PyTorch fp32 reference: parity metrics, the gate, and the layer-by-layer diagnosis
of a failing variant."""
