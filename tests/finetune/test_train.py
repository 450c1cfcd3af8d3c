"""Training with real TRL, PEFT and transformers: a tiny random llama (SmolLM2's architecture and
tokenizer) for the fast tests, the real SmolLM2-135M-Instruct for one slow one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ragops.config import FinetuneConfig
from ragops.errors import RagopsError
from ragops.finetune.device import TrainDevice, choose_device, gpu_batch_size
from ragops.finetune.train import TrainResult, merge, train_dpo, train_sft
from ragops.weights.llm import resolve_llm_path

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
SYSTEM = "Answer from the context. Context: widgets come in colours."


def sft_row(i: int) -> dict:
    return {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What colour is widget {i}?"}],
            "completion": [{"role": "assistant", "content": f"Widget {i} is blue."}]}


def dpo_row(i: int) -> dict:
    row = sft_row(i)
    return {"prompt": row["prompt"], "chosen": row["completion"],
            "rejected": [{"role": "assistant", "content": "I don't know."}]}


def fast_cfg(**kw) -> FinetuneConfig:
    defaults = dict(max_steps=4, learning_rate=1e-2, dpo_learning_rate=1e-2, batch_size=2, grad_accum=1,
                    max_length=128, device="cpu")
    return FinetuneConfig(**{**defaults, **kw})


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A random 2-layer LlamaForCausalLM with SmolLM2's vocabulary, saved with SmolLM2's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, initializer_range=0.1,
                         bos_token_id=1, eos_token_id=2)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    source = resolve_llm_path("SmolLM2-135M-Instruct")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, path / name)
    return path


def logits(model_dir: Path, text: str) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0]


# --- the device ----------------------------------------------------------------------------------


@no_gpu
def test_auto_device_on_a_cpu_machine():
    device = choose_device(FinetuneConfig())
    assert (device.kind, device.bf16, device.batch_size, device.grad_accum) == ("cpu", False, 2, 8)
    assert device.attn_implementation == "sdpa" and device.packing is False and device.memory_gb is None
    assert device.name.startswith("cpu (") and device.to_dict()["kind"] == "cpu"


@no_gpu
def test_explicit_cuda_without_a_gpu_is_an_error_naming_the_setting():
    with pytest.raises(RagopsError, match="finetune_device=cuda") as err:
        choose_device(FinetuneConfig(device="cuda"))
    assert err.value.variable == "finetune_device"


def test_explicit_batch_and_accumulation_win():
    device = choose_device(FinetuneConfig(device="cpu", batch_size=3))
    assert (device.batch_size, device.grad_accum) == (3, 6)  # ceil(16 / 3)
    assert choose_device(FinetuneConfig(device="cpu", batch_size=4, grad_accum=1)).grad_accum == 1


def test_gpu_batch_rule():
    assert gpu_batch_size(139.0, 1024) == 8  # capped: a packed micro-batch stays within 8,192 tokens
    assert gpu_batch_size(139.0, 256) == 16  # capped: about one update's worth of examples
    assert gpu_batch_size(10.0, 1024) == 4  # half of 10 GiB at ~1 GiB per 1,024-token sequence, a power of two
    assert gpu_batch_size(1.0, 4096) == 1  # never 0


# --- SFT -----------------------------------------------------------------------------------------


def test_sft_trains_an_adapter_that_merges_into_a_changed_model(tiny_base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [sft_row(i) for i in range(8)]
    result = train_sft(tiny_base, rows, [sft_row(8), sft_row(9)], fast_cfg(), tmp_path / "sft")

    assert isinstance(result, TrainResult) and result.method == "sft" and result.device.kind == "cpu"
    assert [p["step"] for p in result.loss_curve if "loss" in p] == [1, 2, 3, 4]
    assert [p for p in result.loss_curve if "eval_loss" in p][-1]["step"] == 4
    m = result.metrics
    assert m["steps"] == 4 and m["train_tokens"] > 0 and m["tokens_per_s"] > 0 and m["peak_memory_mb"] > 0
    assert m["final_loss"] < result.loss_curve[0]["loss"]  # a random model at lr 1e-2: the loss falls
    assert 0 < m["eval_loss"] < 20 and m["wall_s"] >= m["train_s"] > 0
    saved = json.loads((tmp_path / "sft" / "train_result.json").read_text())
    assert saved["metrics"] == m and saved["device"]["kind"] == "cpu"

    adapter = result.adapter_dir
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert (adapter / "tokenizer.json").exists()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base))
    assert isinstance(PeftModel.from_pretrained(base, str(adapter)), PeftModel)

    merged = merge(tiny_base, adapter, tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in merged.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    assert model.dtype == torch.float16
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(sft_row(0)["prompt"], tokenize=False,
                                                                    add_generation_prompt=True)
    text = tokenizer.apply_chat_template(sft_row(0)["prompt"] + sft_row(0)["completion"], tokenize=False)
    assert (logits(merged, text) - logits(tiny_base, text)).abs().max() > 1e-2

    merge(tiny_base, adapter, tmp_path / "merged", dtype="float32")  # replaces the folder in place
    assert AutoModelForCausalLM.from_pretrained(str(merged)).dtype == torch.float32

    from ragops.weights.gguf import to_gguf

    gguf = to_gguf(merged, tmp_path / "merged.gguf", dtype="f16")
    assert gguf.stat().st_size > 1_000_000


def test_sft_is_deterministic_with_its_seed(tiny_base, tmp_path):
    rows = [sft_row(i) for i in range(6)]
    first = train_sft(tiny_base, rows, [], fast_cfg(max_steps=2, seed=7), tmp_path / "a")
    second = train_sft(tiny_base, rows, [], fast_cfg(max_steps=2, seed=7), tmp_path / "b")
    assert first.loss_curve == second.loss_curve and "eval_loss" not in first.metrics
    third = train_sft(tiny_base, rows, [], fast_cfg(max_steps=2, seed=8), tmp_path / "c")
    assert third.loss_curve != first.loss_curve  # a different LoRA init and order


def test_packed_examples_do_not_attend_to_each_other(tiny_base):
    """What the GPU path's packing rests on: with SDPA, position_ids restarting at 0 and no attention
    mask (TRL's padding-free batches), transformers masks attention block-diagonally."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_base), attn_implementation="sdpa").eval()
    a, b = torch.arange(10, 17), torch.arange(300, 311)
    with torch.no_grad():
        alone = [model(input_ids=x[None], use_cache=False).logits[0] for x in (a, b)]
        packed = model(input_ids=torch.cat([a, b])[None], use_cache=False,
                       position_ids=torch.cat([torch.arange(len(a)), torch.arange(len(b))])[None]).logits[0]
    assert torch.allclose(packed[: len(a)], alone[0], atol=1e-5)
    assert torch.allclose(packed[len(a):], alone[1], atol=1e-5)


def test_sft_with_packing_runs_on_the_cpu(tiny_base, tmp_path):
    """The GPU path's settings (packing, padding-free batches) on the CPU, where it is cheap to run."""
    cfg = fast_cfg(max_steps=2)
    device = replace(choose_device(cfg), packing=True)
    result = train_sft(tiny_base, [sft_row(i) for i in range(8)], [], cfg, tmp_path / "packed", device=device)
    assert result.device.packing and result.metrics["steps"] == 2 and result.metrics["train_tokens"] > 0


def test_rows_longer_than_max_length_are_counted_and_warned_about(tiny_base, tmp_path, caplog):
    long = sft_row(0)
    long["completion"] = [{"role": "assistant", "content": "Widget 0 is blue. " * 40}]
    with caplog.at_level("WARNING", logger="ragops.finetune.train"):
        result = train_sft(tiny_base, [long, sft_row(1)], [], fast_cfg(max_steps=1, max_length=64), tmp_path)
    assert result.metrics["truncated_rows"] == 1
    assert "1 of 2 training rows are longer than finetune_max_length=64" in caplog.text


def test_no_rows_or_misshapen_rows_are_clear_errors(tiny_base, tmp_path):
    with pytest.raises(RagopsError, match="no training rows for sft"):
        train_sft(tiny_base, [], [], fast_cfg(), tmp_path)
    with pytest.raises(RagopsError, match="no training rows for dpo"):
        train_dpo(tiny_base, [], [], fast_cfg(), tmp_path)
    with pytest.raises(RagopsError, match="train row 0 for dpo lacks chosen, rejected"):
        train_dpo(tiny_base, [sft_row(0)], [], fast_cfg(), tmp_path)
    with pytest.raises(RagopsError, match="not a PEFT adapter folder"):
        merge(tiny_base, tmp_path, tmp_path / "merged")


def test_an_active_mlflow_run_gets_each_step_and_the_final_metrics(tiny_base, tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        # an experiment of this store: another test may have left its own (unknown here) active
        mlflow.set_experiment("train-metrics")
        with mlflow.start_run() as run:
            train_sft(tiny_base, [sft_row(i) for i in range(4)], [], fast_cfg(max_steps=2), tmp_path / "sft")
        client = mlflow.MlflowClient()
        assert [m.step for m in client.get_metric_history(run.info.run_id, "sft/loss")] == [1, 2]
        final = client.get_run(run.info.run_id).data.metrics
        assert final["sft/tokens_per_s"] > 0 and final["sft/steps"] == 2
    finally:
        mlflow.set_tracking_uri(previous)


# --- DPO -----------------------------------------------------------------------------------------


def test_dpo_trains_against_the_base_with_the_adapter_disabled(tiny_base, tmp_path):
    rows = [dpo_row(i) for i in range(6)]
    result = train_dpo(tiny_base, rows, [dpo_row(6), dpo_row(7)], fast_cfg(max_steps=3), tmp_path / "dpo")
    assert result.method == "dpo" and result.metrics["steps"] == 3
    assert result.loss_curve[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: log 2
    assert {"rewards/accuracies", "rewards/margins", "eval_loss"} <= set(result.metrics)
    assert result.metrics["rewards/margins"] > 0  # lr 1e-2 on an easy pair: the chosen answer pulls ahead
    assert (result.adapter_dir / "adapter_config.json").exists()
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 16 and set(config["target_modules"]) >= {"q_proj", "down_proj"}


# --- the real model ------------------------------------------------------------------------------


def completion_nll(model, tokenizer, row: dict) -> float:
    """Mean NLL of the completion's tokens given the prompt, in the chat template."""
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    ids = tokenizer(full, return_tensors="pt").input_ids
    n_prompt = len(tokenizer(prompt).input_ids)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return float(-logp[n_prompt - 1:].gather(1, targets[n_prompt - 1:, None]).mean())


@pytest.mark.slow
def test_sft_on_smollm2_makes_the_target_answer_more_likely(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_llm_path("SmolLM2-135M-Instruct")
    rows = [{"prompt": [{"role": "system", "content": "Answer in one sentence from the context."},
                        {"role": "user", "content": f"Context: The vault code of room {i} is {code}.\n"
                                                    f"Question: What is the vault code of room {i}?"}],
             "completion": [{"role": "assistant", "content": f"The vault code of room {i} is {code}."}]}
            for i, code in enumerate(["ZEBRA-41", "OTTER-17", "MAPLE-93", "CEDAR-08"])]
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    before = [completion_nll(model, tokenizer, r) for r in rows]

    cfg = FinetuneConfig(max_steps=4, learning_rate=1e-3, batch_size=2, grad_accum=1, max_length=256, device="cpu")
    result = train_sft(base, rows, [], cfg, tmp_path / "sft")
    merged = merge(base, result.adapter_dir, tmp_path / "merged", dtype="float32")
    tuned = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    after = [completion_nll(tuned, tokenizer, r) for r in rows]
    assert sum(after) / len(after) < 0.8 * sum(before) / len(before), (before, after)
    assert result.metrics["tokens_per_s"] > 0 and isinstance(result.device, TrainDevice)
