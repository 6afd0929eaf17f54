"""Multiple-choice answering by likelihood, in either answer format (data.answer_format).

letter: the log-prob of each option letter at the answer position (one forward per request).
option: the summed log-prob of each option's text as the answer (one forward per request and option, batched).
"""

from __future__ import annotations

import torch

from scorerl.data.manifest import LETTERS, Sample, answer_choices
from scorerl.envs.base import ScoreRequest, VideoEnv


def choice_scores(env: VideoEnv, requests: list[ScoreRequest], samples: list[Sample],
                  answer_format: str) -> torch.Tensor:
    """[R, len(LETTERS)] log-likelihood of each option of each request; -inf past a sample's last option."""
    n_options = torch.tensor([len(s.options) for s in samples])  # [R]
    # Letters past a sample's last option are not answers to it, however likely the model finds them.
    invalid = torch.arange(len(LETTERS))[None, :] >= n_options[:, None]  # [R, C]
    if answer_format == "letter":
        logp = env.choice_logprobs(requests, list(LETTERS)).float().cpu()  # [R, C]
    else:
        expanded = [ScoreRequest(r.visual, r.prompt, target=text, keep=r.keep)
                    for r, s in zip(requests, samples) for text in answer_choices(s, answer_format)]
        sums = [float(lp.sum()) for lp in env.token_logprobs(expanded)]
        logp = torch.full(invalid.shape, float("-inf"))
        i = 0
        for row, s in enumerate(samples):
            logp[row, :len(s.options)] = torch.tensor(sums[i:i + len(s.options)])
            i += len(s.options)
    return logp.masked_fill(invalid, float("-inf"))


def predict(env: VideoEnv, requests: list[ScoreRequest], samples: list[Sample], answer_format: str) -> list[int]:
    """Index of the most likely option of each request (ties go to the earlier option)."""
    return choice_scores(env, requests, samples, answer_format).argmax(dim=1).tolist()
