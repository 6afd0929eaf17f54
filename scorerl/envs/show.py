"""`scorerl env show CONFIG_OR_FOLDER [--video CLIP]`: what a model folder makes of a prompt and a clip.

Prints the chat text the folder's own template renders around one video (the placeholder shown once, with the
number of tokens it expands to when a clip is given), the frame rule (the config's data section, or for a bare
folder frames at native size), the processor settings read from the folder, and with --video the frames taken
from the clip and the visual tokens the LLM sees (T units x rows x cols, plus LLaVA-OneVision's newline).
"""

from __future__ import annotations

import json
from pathlib import Path

from scorerl.errors import ConfigError

EXAMPLE_PROMPT = "<your question here>"


def load_for_show(target: str, overrides: list[str] | None = None):
    """(env section, data section) of a run config file, or of a bare model folder (its config.json's model type,
    the data defaults at native size)."""
    from scorerl.config import DataSection, EnvSection, load_config
    from scorerl.paths import resolve_config

    folder = Path(target).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise ConfigError(f"{folder}: a model folder needs config.json (or give a run config file)")
        arch = json.loads(config.read_text()).get("model_type")
        if arch not in ("qwen2_5_vl", "llava_onevision"):
            raise ConfigError(f"{config}: model_type {arch!r}; scorerl handles qwen2_5_vl and llava_onevision")
        return EnvSection(arch=arch, path=str(folder), device="cpu"), DataSection(frame_size=0)
    cfg = load_config(resolve_config(target), overrides or [])
    return cfg.env, cfg.data


def describe(env, data, video: str | None = None, prompt: str = EXAMPLE_PROMPT) -> str:
    """The report `scorerl env show` prints (see the module doc)."""
    from scorerl.data.frames import describe_sampling, read_clip, sampling_text
    from scorerl.envs.features import sampling_of

    before, after = env.text_around_video(prompt)
    placeholder = env.tokenizer.convert_ids_to_tokens(env.video_token_id)
    lines = [f"model      {env.arch}", "frames     " + sampling_text(describe_sampling(data))]
    settings = {
        k: env.settings[k]
        for k in ("min_pixels", "max_pixels", "size", "cap_pixels_per_frame")
        if env.settings.get(k) is not None
    }
    if settings:
        lines.append("processor  " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    count = None
    if video is not None:
        sampling = sampling_of(data, env, jitter=0.0)
        clip = read_clip(video, sampling)
        F, H, W, _ = clip.frames.shape
        tokens = env.encode(clip.frames, seconds_per_frame=clip.seconds_per_frame if sampling.timed else None)
        T, N, _ = tokens.features.shape
        count = tokens.token_count
        suffix = f" + {count - T * N} newline" if count != T * N else ""
        lines.append(
            f"clip       {video}: {F} frames of {H} x {W}"
            + (f", {clip.seconds_per_frame:.3f} s apart" if clip.seconds_per_frame else "")
        )
        lines.append(f"tokens     {count} visual tokens = {T} units x {tokens.grid[0]} x {tokens.grid[1]}{suffix}")
    shown = f"{placeholder} x {count}" if count is not None else f"{placeholder} x (visual tokens: give --video)"
    lines += ["prompt     (the folder's chat template; the placeholder shown once)", before + f"[{shown}]" + after]
    return "\n".join(lines)
