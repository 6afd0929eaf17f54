"""Multiple-choice answering by likelihood, in either answer format (data.answer_format).

letter: the log-prob of each option letter at the answer position (one forward per request).
option: the summed log-prob of each option's text as the answer. When every option is a single token (the built-in
        world's answers are), that is the log-prob of its token at the answer position: one forward per request;
        otherwise one forward per request and option, batched.
"""

from __future__ import annotations

import torch

from scorerl.data.manifest import LETTERS, Sample, answer_choices
from scorerl.envs.base import VideoEnv
from scorerl.types import ScoreRequest


def choice_scores(env: VideoEnv, requests: list[ScoreRequest], samples: list[Sample],
                  answer_format: str) -> torch.Tensor:
    """[R, len(LETTERS)] log-likelihood of each option of each request; -inf past a sample's last option."""
    n_options = torch.tensor([len(s.options) for s in samples])  # [R]
    # Letters past a sample's last option are not answers to it, however likely the model finds them.
    invalid = torch.arange(len(LETTERS))[None, :] >= n_options[:, None]  # [R, C]
    if answer_format == "letter":
        logp = env.choice_logprobs(requests, list(LETTERS)).float().cpu()  # [R, C]
    elif _all_single_tokens(env, samples):
        texts = sorted({o for s in samples for o in s.options})
        column = {t: i for i, t in enumerate(texts)}
        full = env.choice_logprobs(requests, texts, normalize=False).float().cpu()  # [R, U] full-vocabulary log-probs
        logp = torch.full(invalid.shape, float("-inf"))
        for row, s in enumerate(samples):
            logp[row, :len(s.options)] = full[row, [column[o] for o in s.options]]
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


def _all_single_tokens(env: VideoEnv, samples: list[Sample]) -> bool:
    from scorerl.errors import EnvError

    try:
        env.choice_ids(sorted({o for s in samples for o in s.options}))
    except (EnvError, AttributeError):
        return False
    return True


def predict(env: VideoEnv, requests: list[ScoreRequest], samples: list[Sample], answer_format: str) -> list[int]:
    """Index of the most likely option of each request (ties go to the earlier option)."""
    return choice_scores(env, requests, samples, answer_format).argmax(dim=1).tolist()
