"""Drivers of the paper's experiments: dataset ranking (experiment 1) and top-k fusion (experiment 2)."""
