"""A small byte-level BPE tokenizer with the special tokens of a real video MLLM, built in code (no hub).

The tiny and world environments need a tokenizer that behaves like the real ones: the same chat markers and
video placeholder tokens, saved as `tokenizer.json` and reloaded with `AutoTokenizer` offline. Byte-level BPE
encodes any text (its base alphabet is the 256 bytes), so an unseen word costs more tokens, never an error.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from scorerl.errors import EnvError

# Chat markers shared by Qwen2.5-VL and LLaVA-OneVision-Qwen2 (both use the Qwen2 ChatML format).
_CHAT = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Named special tokens per architecture, as the real tokenizers name them (`tokenizer.video_token`, ...).
_ARCH_TOKENS = {
    "qwen2_5_vl": {
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
    },
    "llava_onevision": {
        "image_token": "<image>",
        "video_token": "<video>",
    },
}

# Jinja chat templates in each model's real layout (used by `apply_chat_template`; the envs build the same text).
_TEMPLATES = {
    "qwen2_5_vl": (
        "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
        "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llava_onevision": (
        "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'video' %}<video>\n"
        "{% elif c['type'] == 'image' %}<image>\n"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}

# Always mixed into the training text: the template words and the option letters, so that "A".."D" and
# " A".." D" each become one token (choice scoring needs single-token answers).
_BASE_CORPUS = [
    "system\nYou are a helpful assistant.\nuser\nassistant\n",
    "Answer with the option's letter from the given choices directly.",
    "Question: What is in the video? Options: A. B. C. D. The answer is",
    "0 1 2 3 4 5 6 7 8 9 yes no left right up down red green blue yellow",
]
_LETTERS = "ABCD"


def special_tokens(arch: str) -> list[str]:
    """All special tokens of `arch` in a fixed order (their ids are 0..n-1 in a built tokenizer)."""
    if arch not in _ARCH_TOKENS:
        raise EnvError(f"unknown architecture {arch!r}; choose one of {sorted(_ARCH_TOKENS)}")
    return _CHAT + list(_ARCH_TOKENS[arch].values())


def build_tokenizer(
    corpus: list[str] | None = None, vocab_size: int = 512, arch: str = "qwen2_5_vl"
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus` (plus template words and option letters) with `arch`'s special tokens.

    `vocab_size` is an upper bound: a small corpus yields fewer merges. Use `len(tokenizer)` for the model.
    """
    specials = special_tokens(arch)
    if vocab_size < 256 + len(specials) + 2 * len(_LETTERS):
        raise EnvError(
            f"vocab_size {vocab_size} is too small: need the 256 bytes, {len(specials)} special "
            f"tokens and the option letters"
        )
    letters = " ".join(f"{c} {c}. ({c})" for c in _LETTERS)
    text = list(corpus or []) + _BASE_CORPUS * 4 + [letters] * 64  # repeats make the letter merges win

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(text, trainer)

    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(_ARCH_TOKENS[arch]),
    )
    tok.chat_template = _TEMPLATES[arch]
    _check_single_letters(tok)
    return tok


def _check_single_letters(tok) -> None:
    for letter in _LETTERS:
        for text in (letter, " " + letter):
            if len(tok(text, add_special_tokens=False).input_ids) != 1:
                raise EnvError(f"tokenizer splits option {text!r} into several tokens; raise vocab_size")


# ------------------------------------------------------------------------------- Qwen2's own tokenizer layout

# Qwen2's pre-tokenizer split, exactly as its tokenizer.json (and transformers' Qwen2Tokenizer) has it: words with
# their leading space, single digits, runs of punctuation, newlines apart from other whitespace.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_qwen2_bpe(
    added_tokens: list[tuple[str, bool]], corpus: list[str] | None = None, vocab_size: int = 640
) -> Tokenizer:
    """A byte-level BPE laid out like Qwen2's tokenizer.json: NFC, the Qwen2 regex split, then bytes; the learned
    vocabulary first (256 bytes + merges), then `added_tokens` (content, special) in order, so their ids follow
    the vocabulary as in the release (151643 = <|endoftext|> there). `vocab_size` bounds the learned part only.

    A `tokenizers.Tokenizer` (what tokenizer.json, vocab.json and merges.txt are written from); option letters
    "A".."D" and " A".." D" are single tokens, as choice scoring needs.
    """
    from tokenizers import AddedToken, Regex, normalizers

    if vocab_size < 256 + 2 * len(_LETTERS):
        raise EnvError(f"vocab_size {vocab_size} is too small: need the 256 bytes and the option letters")
    byte_level = dict(add_prefix_space=False, trim_offsets=False, use_regex=False)
    bpe = Tokenizer(
        models.BPE(
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(**byte_level),
        ]
    )
    bpe.decoder = decoders.ByteLevel(**byte_level)
    bpe.post_processor = processors.ByteLevel(**byte_level)
    letters = " ".join(f"{c} {c}. ({c})" for c in _LETTERS)
    text = list(corpus or []) + _BASE_CORPUS * 4 + [letters] * 64  # repeats make the letter merges win
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(text, trainer)
    for content, special in added_tokens:  # one at a time: each id is the next one, in the given order
        token = AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        (bpe.add_special_tokens if special else bpe.add_tokens)([token])
    _check_single_letters(PreTrainedTokenizerFast(tokenizer_object=bpe))
    return bpe
