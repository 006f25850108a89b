"""Benchmarks: ``make bench`` (``python -m bench``) runs them and prints their figures.

Each benchmark is a module exposing ``async def run(ctx: BenchContext) -> list[Figure]``; it is
listed in ``BENCHMARKS`` in run order. The first, ``limits``, measures what this machine can do
with our events so that later processors report their throughput as a ratio to it (``ctx.limits``).
"""

BENCHMARKS = ["bench.limits", "bench.contact_callbacks", "bench.tag_segments", "bench.tag_profiles"]
