"""Group-wise RL of the SCORE policy against the frozen MLLM environment. One step, in phases that never
interleave (trainer.py runs them):

rollout.py      collect: features -> keep logits -> K Bernoulli masks -> one batched env.score -> CE, CE_base
rewards.py      judge: dCE and kept fraction -> fidelity, sparsity, reward                  [B, K]
advantages.py   judge: named estimators grpo | split | split_action | dr_grpo              [B, K]
update.py       update: the one loss path of every epoch (keep_logits -> loss.py)
loss.py         REINFORCE with a group baseline (+ optional PPO clip, entropy, KL)
metrics.py      the logged metrics (TRL's names first), metrics.jsonl and trackers
curriculum.py, sampler.py   which samples each step sees, resumable
resume.py       where a run starts and what a resume may change
trainer.py      the recipe, top to bottom
"""
