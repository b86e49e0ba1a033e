"""Writes a tiny Llama model directory (config, tokenizer, random weights) for the e2e test.

The weights are random but scaled so that attention matters: with SGLang's
``--load-format dummy`` every weight is a tiny uniform value, the attention scores are
almost flat and the output barely depends on the cached KV, so an output-equality check
could not see wrong KV bytes. Here the scales (see ``_weights``) make every cached page
count: one wrong page of the prefix changes the greedy output.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

VOCAB_SIZE = 1024
HIDDEN = 256
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 512
MAX_POSITIONS = 4096
# Token ids 0..2 are the special tokens below; every other id is a plain word "w<id>".
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


def _config() -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    }


def _write_tokenizer(out: Path) -> None:
    """A word-level tokenizer: text "w17 w42" is tokens [17, 42]; no merges, no surprises."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for i in range(len(SPECIAL_TOKENS), VOCAB_SIZE):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": False,
                "add_eos_token": False,
                "model_max_length": MAX_POSITIONS,
                "clean_up_tokenization_spaces": False,
            }
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )


def _weights(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    # std 1/sqrt(fan_in) keeps activations O(1). Q and K get 3x that: q.k/sqrt(d) then has a
    # spread of a few units, so softmax is neither flat (the output would ignore any single
    # page) nor one-hot (only the best-matching token would count). V and O get 3x so the
    # attention output outweighs the token's own embedding in the residual stream. Measured
    # with transformers on this model: zeroing one of the 64 prefix pages, or replacing it
    # with a page of another prompt, changes several of the 16 greedy tokens.
    base = HIDDEN**-0.5
    w = {
        "model.embed_tokens.weight": rand(VOCAB_SIZE, HIDDEN, std=1.0),
        "model.norm.weight": torch.ones(HIDDEN, dtype=torch.bfloat16),
        "lm_head.weight": rand(VOCAB_SIZE, HIDDEN, std=base * 4),
    }
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        w[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        w[p + "self_attn.q_proj.weight"] = rand(HEADS * HEAD_DIM, HIDDEN, std=base * 3)
        w[p + "self_attn.k_proj.weight"] = rand(KV_HEADS * HEAD_DIM, HIDDEN, std=base * 3)
        w[p + "self_attn.v_proj.weight"] = rand(KV_HEADS * HEAD_DIM, HIDDEN, std=base * 3)
        w[p + "self_attn.o_proj.weight"] = rand(HIDDEN, HEADS * HEAD_DIM, std=base * 3)
        w[p + "mlp.gate_proj.weight"] = rand(INTERMEDIATE, HIDDEN, std=base)
        w[p + "mlp.up_proj.weight"] = rand(INTERMEDIATE, HIDDEN, std=base)
        w[p + "mlp.down_proj.weight"] = rand(HIDDEN, INTERMEDIATE, std=INTERMEDIATE**-0.5)
    return w


def write_tiny_llama(out: Path, seed: int = 0) -> Path:
    """Creates ``out`` with config.json, tokenizer files and model.safetensors."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(_config(), indent=1))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    _write_tokenizer(out)
    save_file(_weights(seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


if __name__ == "__main__":
    import sys

    print(write_tiny_llama(Path(sys.argv[1])))
