"""Trident rewards in TRL's GRPOTrainer: one real training step on a tiny random Llama, with
a locally built tokenizer, calling a built-in reward and a composition through TRL's own code."""

from __future__ import annotations

import pytest

from rewards.adapter import to_trl
from rewards.composition import ComponentConfig, Composition, CompositionConfig

VOCAB = ["[PAD]", "[EOS]", "[UNK]", "assert", "len", "(", ")", "G", "==", "0", "1", "2", "nx", ".", "x", "f", ","]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]")


def tiny_llama(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(cfg)


def test_grpo_trainer_calls_trident_rewards(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = tiny_tokenizer()
    data = Dataset.from_dict({
        "prompt": ["G = nx . f ( x )", "x = f ( 1 )"] * 2,
        "target": ["assert len ( G ) == 2", "assert x == 1"] * 2,
    })
    composition = Composition.from_config(CompositionConfig(
        name="text", components=[ComponentConfig("token_f1", 1.0), ComponentConfig("length", -0.01)], gate=[]))
    calls = []

    def spy(prompts, completions, target, **kwargs):
        calls.append({"completions": list(completions), "target": list(target), "keys": set(kwargs)})
        return [None] + [0.0] * (len(completions) - 1)  # None: not applicable, NaN in TRL

    f1 = to_trl("token_f1")
    assert f1.__name__ == "token_f1" and to_trl(composition).__name__ == "text"
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=6, max_steps=1, learning_rate=1e-3, logging_steps=1, report_to="none",
                      save_strategy="no", bf16=False, seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=tiny_llama(tokenizer), reward_funcs=[f1, to_trl(composition), to_trl(spy)],
                          args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()

    # TRL called our functions with its own arguments and the dataset's target column
    assert calls and len(calls[0]["completions"]) == 4 and calls[0]["target"][0].startswith("assert")
    assert {"trainer_state", "completion_ids"} <= calls[0]["keys"]
    logged = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    f1_mean = logged["rewards/token_f1/mean"]
    # the trainer's recorded mean is the reward's value on the completions it generated
    expected = to_trl("token_f1")(prompts=[None] * 4, completions=calls[0]["completions"], target=calls[0]["target"])
    assert f1_mean == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    # the composition's total and its components reach TRL's logs (components through log_metric)
    assert logged["rewards/text/token_f1/mean"] == pytest.approx(f1_mean, abs=1e-5)
    lengths = to_trl("length")(prompts=[None] * 4, completions=calls[0]["completions"])
    assert logged["rewards/text/length/mean"] == pytest.approx(sum(lengths) / 4, abs=1e-5)
    assert logged["rewards/text/mean"] == pytest.approx(f1_mean - 0.01 * sum(lengths) / 4, abs=1e-5)
    assert logged["rewards/text/unscored"] == 0.0 and logged["rewards/spy/mean"] == 0.0  # the None left out


def test_conversational_completions_are_read_as_their_text():
    f = to_trl("exact_match")
    got = f(prompts=[[{"role": "user", "content": "G = nx.Graph()"}]] * 2,
            completions=[[{"role": "assistant", "content": "assert len(G) == 0"}],
                         [{"role": "assistant", "content": "assert G"}]],
            target=["assert len( G )==0"] * 2, trainer_state=None, log_metric=None, log_extra=None)
    assert got == [1.0, 0.0]
