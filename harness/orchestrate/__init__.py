"""The parent side of a run: plan, prepare, run the cases, convert, `bench ab`, ExecuTorch staging."""
