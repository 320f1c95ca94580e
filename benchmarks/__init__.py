"""Side-by-side benchmarks: scatter_magics against Dask, Ray and ipyparallel.

Run ``python -m benchmarks.run --help``; ``benchmarks/README.md`` says what each row measures.
"""
