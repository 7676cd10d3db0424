"""The character-level tokenizer of the built-in tiny model (one token per ASCII character).

Built from a fixed vocabulary with the ``tokenizers`` library and wrapped as a transformers
``PreTrainedTokenizerFast``, so ``AutoTokenizer.from_pretrained(dir)`` and vLLM load the saved
directory without any download. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
# Every printable ASCII character (digits, operators, letters, punctuation, space) plus newline:
# enough for the arithmetic prompts and for readable text; anything else maps to <unk>.
CHARACTERS = tuple(ch for ch in string.printable if ch not in "\t\r\x0b\x0c")


def character_vocab() -> dict[str, int]:
    """Token -> id: the 4 special tokens first, then the characters in ``string.printable`` order."""
    return {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer: ``encode(text)`` is ``[<bos>] + one id per character``; decode concatenates.

    ``len(tokenizer)`` (100) is the vocabulary size the tiny model must have.
    """
    core = Tokenizer(models.WordLevel(vocab=character_vocab(), unk_token=UNK))
    # Every single character (newline included) is its own "word", so WordLevel acts per character.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Fuse joins the decoded pieces without the spaces WordLevel would otherwise put between them.
    core.decoder = decoders.Fuse()
    bos_id = character_vocab()[BOS]
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        padding_side="left", model_max_length=256, clean_up_tokenization_spaces=False)


def save_char_tokenizer(out_dir: str) -> PreTrainedTokenizerFast:
    """Write the tokenizer files (tokenizer.json, tokenizer_config.json, ...) into ``out_dir``."""
    tokenizer = build_char_tokenizer()
    tokenizer.save_pretrained(out_dir)
    return tokenizer
