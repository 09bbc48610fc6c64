"""PyTorch -> artifact: one module per format, the variant catalog and a content-addressed cache."""
