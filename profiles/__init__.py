"""The "what" of a run: built-in profiles, their validated schema, the model zoo and its datasets."""
