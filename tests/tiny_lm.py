"""A tiny randomly initialised Llama with a word-level chat tokenizer, built in seconds
without a download: the whole pretrained-policy path runs on it in the tests.

:func:`tiny_model` writes ``config.json``, the weights and the tokenizer (with a ChatML
chat template, as SmolLM2's) into a folder that ``from_pretrained`` loads, so
``algo.policy.model=<folder>`` takes it like any local model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from pglab.envs.booking_text import SYSTEM_PHRASES, make_request
from pglab.envs.dialogue import SLOTS

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|>"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{% endif %}"
)
CONF = Path(__file__).resolve().parents[1] / "conf"


def vocabulary() -> list[str]:
    """Every word the requests, the system prompt and a booking reply use, and the specials."""
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()
    texts = [make_request(seed, 3).message for seed in range(2000)]
    system_prompt = OmegaConf.load(CONF / "env" / "dialogue_text.yaml").system_prompt
    texts += [system_prompt, "sure i booked a table user system assistant"]
    texts += [phrase.format(v) for k, phrase in enumerate(SYSTEM_PHRASES) for v in SLOTS[k][1]]
    words = {w for text in texts for w, _ in split.pre_tokenize_str(text.lower())}
    words |= {w for text in texts for w, _ in split.pre_tokenize_str(text)}
    return SPECIAL + sorted(words)


def tiny_model(folder: Path, seed: int = 0, layers: int = 2, width: int = 32) -> Path:
    """A random Llama (``layers`` blocks of ``width``) and its tokenizer saved in ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = vocabulary()
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
