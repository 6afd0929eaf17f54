"""Evaluation: accuracy of compression methods at keep ratios, prefill timing, reports.

harness.py   run_eval: manifest -> cached features -> masks per method x ratio -> option-letter answers -> metrics
methods.py   method name -> keep masks for a batch (baselines, fastv, the trained SCORE policy)
bench.py     run_bench: LLM prefill latency with all visual tokens vs kept ones (policy time included)
flops.py     analytic prefill FLOPs, full vs kept
report.py    FILE.json / FILE.md / FILE.png
stats.py     bootstrap intervals (accuracies, paired differences, training seeds pooled), Wilson

Heavy pieces (environments, matplotlib) are imported by the functions that need them.
"""
