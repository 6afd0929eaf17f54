"""Where the frozen environment's weights live when one GPU cannot hold them (`env.placement`).

    replicate   the whole model on every process's device (the default; 7B models)
    zero3       the language model's weights partitioned across all processes with DeepSpeed ZeRO-3 and gathered
                layer by layer during each forward, the way RLHF trainers hold a frozen reference model: a 72B
                environment (about 145 GB in bf16) runs on 8 x 80 GB. The vision tower, its projector and the
                input-embedding table stay whole on every process (a few % of a 72B model): each process encodes
                its own videos, whenever it needs them, without waiting for the others.
    device_map  one process per node, the model split over the node's GPUs by accelerate's big-model placement
                (`device_map="auto"`); layers run one GPU after another.

Under zero3 every forward of the language model is a collective call: each of its layers all-gathers its weights
from every process. Processes score different batches, which may take different numbers of forwards (long
sequences are chunked by env.token_budget) and different numbers of scoring calls (CE_base is scored only for
samples not seen before). So a partitioned environment runs in lockstep: `env.lockstep(n)` returns the largest n
over all processes, and a process with fewer forwards to run adds one-token filler forwards until every process
has run as many (envs/hf.py `_last_logits`; rl/rollout.py `base_ce`). The values every real forward computes are
those of the unpartitioned model: gathering moves weights, it does not change them.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from scorerl.errors import ConfigError, EnvError

# DeepSpeed settings for the partitioned language model; `env.zero3_config` (a JSON file) may replace the
# zero_optimization block (e.g. to offload parameters to CPU memory with "offload_param").
ZERO3_DEFAULTS = {
    "stage": 3,
    # Tensors under this many elements (norms, biases) stay whole on every process: gathering them costs more
    # than they weigh.
    "stage3_param_persistence_threshold": 100_000,
    "stage3_prefetch_bucket_size": 50_000_000,
    "overlap_comm": True,
}


def check_launch(placement: str) -> None:
    """ConfigError when this launch cannot serve `placement` (replicate | zero3 | device_map): device_map needs
    one process per node (zero3's need for a process group is checked by partition_zero3)."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if placement == "device_map" and local_processes > 1:
        raise ConfigError(
            f"env.placement: device_map splits the model over this node's GPUs, so it needs one process"
            f" per node; this launch starts {local_processes} (use --num_processes equal to the node "
            "count, or env.placement: zero3)"
        )


def zero3_config(dtype: torch.dtype, path: str = "") -> dict:
    """The DeepSpeed config of a partitioned, frozen language model in `dtype`."""
    zero = dict(ZERO3_DEFAULTS)
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"env.zero3_config: {file} not found")
        try:
            given = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"env.zero3_config: {file} is not JSON: {e}") from None
        zero = dict(given.get("zero_optimization", given))
        if zero.get("stage", 3) != 3:
            raise ConfigError(
                f"env.zero3_config: {file} sets zero_optimization.stage={zero.get('stage')}; "
                "partitioning weights is stage 3"
            )
        zero["stage"] = 3
    return {
        # DeepSpeed asks for a micro-batch even without an optimizer; it is never used to split anything here.
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
    }


def partition_zero3(env, config_path: str = "") -> None:
    """Partition `env`'s language model (decoder layers, norm, LM head) across all processes with DeepSpeed ZeRO-3,
    in place, and put `env` in lockstep (see the module doc). Needs an initialised process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise EnvError(
            "env.placement: zero3 partitions the environment across processes, so it needs a "
            "distributed launch (accelerate launch / torchrun); for a single-process command (eval, "
            "bench) use env.placement=device_map"
        )
    try:
        import deepspeed
    except ImportError:
        raise ConfigError(
            "env.placement: zero3 needs deepspeed: pip install 'scorerl[deepspeed]' "
            "(on a machine without CUDA: DS_BUILD_OPS=0 pip install deepspeed)"
        ) from None

    model = env.model
    # A private, whole copy of the embedding table: the text of every request is embedded outside the decoder's
    # forward (build_sequence), on each process at its own pace, so it must not be a gathered weight.
    env.text_embedding = copy.deepcopy(model.get_input_embeddings()).requires_grad_(False)
    language_model = torch.nn.ModuleDict({"decoder": model.model.language_model, "lm_head": model.lm_head})
    deepspeed.initialize(model=language_model, config=zero3_config(env.dtype, config_path), dist_init_required=False)
    language_model.eval()
    device = env.text_embedding.weight.device

    def lockstep(n: int) -> int:
        count = torch.tensor([n], dtype=torch.long, device=device)
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        return int(count)

    env.lockstep = lockstep


def partitioned_numel(module: torch.nn.Module) -> tuple[int, int]:
    """(elements this process holds, elements of the whole module) of a module's parameters; equal when nothing
    is partitioned. A ZeRO-3 parameter's local shard is `ds_tensor`, its full size `ds_numel`."""
    held = total = 0
    for p in module.parameters():
        shard = getattr(p, "ds_tensor", None)
        held += shard.numel() if shard is not None else p.numel()
        total += getattr(p, "ds_numel", p.numel())
    return held, total
