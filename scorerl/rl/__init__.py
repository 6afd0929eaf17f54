"""Group-wise RL of the SCORE policy against the frozen MLLM environment.

rewards.py      dCE and kept fraction -> fidelity, sparsity, reward        [B, K]
advantages.py   named estimators grpo | split | split_action | dr_grpo    [B, K]
loss.py         REINFORCE with a group baseline (+ optional PPO clip, entropy, KL)
The other modules (curriculum, sampling, training, checkpoints) describe themselves.
"""
