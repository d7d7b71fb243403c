"""``genzoo.runs.load``: one loader opens a run folder, a checkpoint folder and local Hugging Face
folders of every kind genzoo implements, and refuses anything else with one clear line."""

from __future__ import annotations

import json

import pytest
import torch

from genzoo import api
from genzoo.core.errors import GenzooError
from genzoo.runs.load import hf_model_type, load


def test_a_run_folder_and_its_checkpoint_folder_load_the_same_weights(tmp_path):
    api.train("vae", "toy2d:moons", steps=2, out=tmp_path / "run", val_every=0, progress=False, seed=0)
    from_run = load(tmp_path / "run")
    from_ckpt = load(tmp_path / "run" / "checkpoint")
    assert from_run.family == "vae" and not from_run.training
    for (name, a), (_, b) in zip(from_run.state_dict().items(), from_ckpt.state_dict().items()):
        assert torch.equal(a, b), name
    assert hf_model_type(tmp_path / "run" / "checkpoint") is None  # genzoo's config.json names a family


def test_hugging_face_folders_of_each_kind_load_with_their_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    from hf_tiny import save_tiny_llama

    save_tiny_llama(tmp_path / "llama")
    llama = load(tmp_path / "llama")
    assert llama.family == "gpt" and llama.tokenizer is not None

    torch.manual_seed(0)
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4))
    t5.save_pretrained(tmp_path / "t5")
    assert load(tmp_path / "t5").family == "t5"

    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64))
    bert.save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)]))
    assert load(tmp_path / "bert").family == "bert"


@pytest.mark.parametrize("config, message", [
    ({"model_type": "gpt_neox"}, "genzoo opens llama, mistral, qwen2, bert and t5 folders"),
    (None, "holds no checkpoint"),
])
def test_other_folders_are_refused_in_one_line(tmp_path, config, message):
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(GenzooError, match=message) as e:
        load(tmp_path)
    assert "\n" not in str(e.value)

