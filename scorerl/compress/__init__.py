"""Token compression: the SCORE policy and how its scores become masks.

state.py     tokens v [T, N, D] -> surprise-augmented state h [T, N, S]
policy.py    TokenPolicy (per-token MLP h -> keep logit), keep_logits() (THE scoring path), save/from_pretrained
select.py    Bernoulli masks for training (sample_masks), top-k masks for inference (topk_mask)
baselines/   training-free methods run in the same harness
"""
