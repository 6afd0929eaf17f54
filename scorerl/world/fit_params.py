"""Which parameters of the world's small MLLM train during its fit, and at which learning-rate scale."""

from __future__ import annotations

import torch

from scorerl.errors import ConfigError

PROJECTOR = ("model.visual.merger.", "model.multi_modal_projector.")  # Qwen2.5-VL's merger, LLaVA's projector

# The vision encoder's parameters (ViT blocks and patch embedding) and, among them, the merger / projector that maps
# its output into the LLM: that one has its own learning-rate scale, as in the usual MLLM recipe of a frozen ViT and
# a trained projector.
VISION_ENCODER = ("model.visual.", "model.vision_tower.")


def param_groups(env, vision_lr_scale: float, projector_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: the LLM at lr, the vision encoder at lr x vision_lr_scale, the projector at lr x
    projector_lr_scale. A part with scale 0 stays as it is (its random initialisation, or the projector's warm-up):
    it is left out and gets no gradient, which also saves its backward."""
    parts: dict[str, list] = {"rest": [], "encoder": [], "projector": []}
    for name, p in env.model.named_parameters():
        part = "projector" if name.startswith(PROJECTOR) else "encoder" if name.startswith(VISION_ENCODER) else "rest"
        parts[part].append(p)
    groups = [{"params": parts["rest"], "lr_scale": 1.0}]
    for part, scale in (("encoder", vision_lr_scale), ("projector", projector_lr_scale)):
        if scale > 0:
            groups.append({"params": parts[part], "lr_scale": float(scale)})
        else:
            for p in parts[part]:
                p.requires_grad_(False)
    return groups


def set_trainable(env, on: bool) -> None:
    """Switch the environment between fitting (gradients through encode and the LLM) and frozen scoring."""
    env.grad = on
    env.model.requires_grad_(on)
    env.model.train(on)


def projector_parameters(model) -> list[torch.nn.Parameter]:
    params = [p for n, p in model.named_parameters() if n.startswith(PROJECTOR)]
    if not params:
        raise ConfigError(
            "fit.projector_warmup_steps: this model has no merger / projector parameters "
            f"(none named {' or '.join(PROJECTOR)}*)"
        )
    return params
