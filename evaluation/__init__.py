"""The product measured: the evaluation runs of `s2m eval` and the speed benchmarks of `s2m bench`.

Between `retrieval` and `api`: it may import formats, phantoms, generation, indexing and retrieval,
and only `api` (and the scripts in benchmarks/) import it.
"""
