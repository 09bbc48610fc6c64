"""The `bench` command line: parse arguments, call the packages, render results or one-line errors."""
