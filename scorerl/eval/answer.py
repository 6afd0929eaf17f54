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


def choice_scores(
    env: VideoEnv, requests: list[ScoreRequest], samples: list[Sample], answer_format: str
) -> torch.Tensor:
    """[R, C] log-likelihood of each option of each (multiple-choice) request, C = the most options in the batch;
    -inf past a sample's last option."""
    n_options = torch.tensor([len(s.options) for s in samples])  # [R]
    C = int(n_options.max())
    # Letters past a sample's last option are not answers to it, however likely the model finds them.
    invalid = torch.arange(C)[None, :] >= n_options[:, None]  # [R, C]
    if answer_format == "letter":
        logp = env.choice_logprobs(requests, list(LETTERS[:C])).float().cpu()  # [R, C]
    elif _all_single_tokens(env, samples):
        texts = sorted({o for s in samples for o in s.options})
        column = {t: i for i, t in enumerate(texts)}
        full = env.choice_logprobs(requests, texts, normalize=False).float().cpu()  # [R, U] full-vocabulary log-probs
        logp = torch.full(invalid.shape, float("-inf"))
        for row, s in enumerate(samples):
            logp[row, : len(s.options)] = full[row, [column[o] for o in s.options]]
    else:
        expanded = [
            ScoreRequest(r.visual, r.prompt, target=text, keep=r.keep)
            for r, s in zip(requests, samples)
            for text in answer_choices(s, answer_format)
        ]
        sums = [float(lp.sum()) for lp in env.token_logprobs(expanded)]
        logp = torch.full(invalid.shape, float("-inf"))
        i = 0
        for row, s in enumerate(samples):
            logp[row, : len(s.options)] = torch.tensor(sums[i : i + len(s.options)])
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
    """Index of the most likely option of each multiple-choice request (ties go to the earlier option)."""
    return choice_scores(env, requests, samples, answer_format).argmax(dim=1).tolist()


def open_answers(
    env: VideoEnv, requests: list[ScoreRequest], samples: list[Sample], extra_tokens: int = 8
) -> tuple[list[str], list[float]]:
    """Open-ended questions: (greedy answer text, cross-entropy of the reference answer) per request; the answer
    may run `extra_tokens` past the reference's length."""
    scored = [ScoreRequest(r.visual, r.prompt, target=s.answer, keep=r.keep) for r, s in zip(requests, samples)]
    ce = env.score(scored).float().cpu().tolist()
    texts = []
    for r, s in zip(requests, samples):
        n = len(env.tokenizer(s.answer, add_special_tokens=False).input_ids)
        texts.append(env.generate(r, max_new_tokens=n + extra_tokens))
    return texts, ce


def normalise_answer(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed (SQuAD-style), for normalised match."""
    import re
    import string

    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(w for w in re.sub(r"\b(a|an|the)\b", " ", text).split())
