"""Worker of test_partition.py, run by torchrun on 2 CPU processes: score requests with the environment whole,
then partitioned with ZeRO-3, each process with a different amount of work; write what it saw to OUT/rank<R>.json.

    python -m torch.distributed.run --nproc_per_node 2 zero3_scoring.py ENV_FOLDER ZERO3_JSON OUT
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from scorerl.envs.partition import partition_zero3, partitioned_numel
from scorerl.envs.qwen2_5_vl import Qwen25VLEnv
from scorerl.types import ScoreRequest, VisualTokens

folder, zero3_json, out = sys.argv[1:4]
dist.init_process_group("gloo")
rank = dist.get_rank()
env = Qwen25VLEnv.from_pretrained(folder, device="cpu", token_budget=120)
D = env.hidden_size
g = torch.Generator().manual_seed(0)
requests = [
    ScoreRequest(
        VisualTokens(torch.randn(4, 4, D, generator=g), grid=(2, 2)),
        "Which colour? " * (1 + i % 3),
        target="B",
        keep=torch.rand(4, 4, generator=g) < 0.6,
    )
    for i in range(7)
]
whole = env.score(requests)  # [7], every process the same
# Rank 0 scores all 7 (several token-budget chunks), rank 1 one; then rank 0 an empty call while rank 1 scores 2.
mine = requests if rank == 0 else requests[:1]
whole_choices = env.choice_logprobs(mine[:3], ["A", "B"])  # the same batch as below: batching changes rounding

partition_zero3(env, zero3_json)
held, total = partitioned_numel(env.model.model.language_model)
with torch.inference_mode():
    first = env.score(mine)
    second = env.score([] if rank == 0 else requests[5:7])
    choices = env.choice_logprobs(mine[:3], ["A", "B"])
Path(out, f"rank{rank}.json").write_text(
    json.dumps(
        {
            "held": held,
            "total": total,
            "whole": whole.tolist(),
            "first": first.tolist(),
            "second": second.tolist(),
            "choices": choices.tolist(),
            "whole_choices": whole_choices.tolist(),
        }
    )
)
