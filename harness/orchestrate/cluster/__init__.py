"""Running a profile's workers on a Ray cluster (`bench run --cluster`, `bench node start`).

The executor (`executor.RayExecutor`) is an `Executor` of the executor seam (`harness.process.executor`)
and sits here, in the orchestration room, not in the process room beside `LocalExecutor`: a node says
what it has by this host's backends (`node.node_resources`), a layer above the process room, and the
command line that builds an executor imports this room anyway. `ray` is the optional extra `cluster`;
nothing here imports it until a cluster is asked for (`connect`)."""
