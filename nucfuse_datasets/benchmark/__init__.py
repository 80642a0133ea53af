"""The benchmark: the second half of the flow (bytes in → datasets → **benchmark** → scoring).

* :mod:`nucfuse_datasets.benchmark.protocol` — the NucFuse-test protocol: selection rule, shipped id lists;
* :mod:`nucfuse_datasets.benchmark.composite` — ``NucFuseTest`` and ``NucFuseTrain``;
* :mod:`nucfuse_datasets.benchmark.evaluation` — scoring a model on NucFuse-test, and its report;
* :mod:`nucfuse_datasets.benchmark.leakage` — overlap checks between training data and NucFuse-test;
* :mod:`nucfuse_datasets.benchmark.analysis` — the paper's analyses and figures;
* :mod:`nucfuse_datasets.benchmark.paper` — the paper's published numbers (Tables 1-3);
* ``splits/`` — the shipped NucFuse-test id lists (package data).
"""
