"""Test helper: a tiny randomly initialised Hugging Face Llama folder (config.json, model.safetensors,
tokenizer.json), saved locally the way a user's downloaded checkpoint would sit on disk."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_llama(folder: Path):
    """Write the folder; return (transformers' fast tokenizer, the transformers model)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 3, "hello world, generative models"] * 50,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return fast, model
