"""The benchmark suite: hmacfs against nginx and Prosody on this machine.

Run it with ``python -m bench`` (see ``bench/README.md``). The modules, in the
order a run uses them: :mod:`bench.servers` starts each server,
:mod:`bench.load` is the load generator, :mod:`bench.usage` reads the servers'
CPU and memory from /proc, :mod:`bench.workloads` runs the workloads,
:mod:`bench.report` writes ``docs/benchmarks.md`` and its charts.
"""
