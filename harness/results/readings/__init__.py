"""What a run's results say, read the same way by every report and by the runner: the variant to ship,
where the time went, each series' change points across runs, and the questions every reader asks (which
cases were measured, in which order)."""
