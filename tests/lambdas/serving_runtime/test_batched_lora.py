"""Batched multi-LoRA against peft on a tiny Llama (needs torch, transformers and peft; skipped without)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from serving_runtime.adapter_format import AdapterFormatError  # noqa: E402
from serving_runtime.batched_lora import MultiLoraModel  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def tiny_llama() -> Any:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    folders = {}
    for seed, (name, rank, targets) in enumerate(
        [("t1", 4, TARGETS), ("t2", 8, ["q_proj", "v_proj"]), ("t3", 2, ["o_proj"])], start=1
    ):
        torch.manual_seed(seed)
        model = peft.get_peft_model(
            tiny_llama(),
            peft.LoraConfig(r=rank, lora_alpha=3 * rank + 1, target_modules=targets, init_lora_weights=False),
        )
        model.save_pretrained(str(root / name))
        folders[name] = root / name
    return folders


# Both ways of adding the rows' deltas: folded into the group's GEMM (batches up to fold_rows) and two
# batched products (larger batches).
BOTH_PATHS = pytest.mark.parametrize("fold_rows", [32, 0], ids=["folded", "batched"])


@BOTH_PATHS
def test_a_mixed_batch_gives_peft_logits_row_by_row_while_adapters_page_in_and_out(
    adapters: dict[str, Path], fold_rows: int
) -> None:
    reference = peft.PeftModel.from_pretrained(tiny_llama(), str(adapters["t1"]), adapter_name="t1")
    for name in ("t2", "t3"):
        reference.load_adapter(str(adapters[name]), adapter_name=name)
    rows = ["t1", "t2", "t3", "t3", "t2", "t1"]
    input_ids = torch.randint(0, 64, (len(rows), 7), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = reference(input_ids=input_ids, adapter_names=rows).logits

    base = tiny_llama()
    served = MultiLoraModel(base, target_modules=TARGETS, max_rank=8, gpu_slots=2, fold_rows=fold_rows)
    for name, folder in adapters.items():
        served.load_adapter_dir(name, folder)
    outputs = []
    for start in range(0, len(rows), 2):  # two slots for three adapters: pages in and out between batches
        with torch.inference_mode(), served.adapters(rows[start : start + 2]):
            outputs.append(base(input_ids=input_ids[start : start + 2]).logits)
    got = torch.cat(outputs)
    with torch.inference_mode():
        plain = base(input_ids=input_ids).logits
    assert (expected - plain).abs().max() > 1e-2  # the adapters change the output ...
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # ... exactly as peft applies them


@BOTH_PATHS
def test_generate_uses_each_rows_adapter(adapters: dict[str, Path], fold_rows: int) -> None:
    base = tiny_llama()
    served = MultiLoraModel(base, target_modules=TARGETS, max_rank=8, gpu_slots=4, fold_rows=fold_rows)
    for name, folder in adapters.items():
        served.load_adapter_dir(name, folder)
    prompt = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(9)).repeat(3, 1)
    options = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    mixed = served.generate(["t1", "t2", "t3"], input_ids=prompt, **options)
    for row, name in enumerate(["t1", "t2", "t3"]):
        alone = served.generate([name], input_ids=prompt[:1], **options)
        assert torch.equal(mixed[row], alone[0])


def test_adapters_the_runtime_cannot_serve_are_refused(adapters: dict[str, Path]) -> None:
    served = MultiLoraModel(tiny_llama(), target_modules=["q_proj", "v_proj"], max_rank=4, gpu_slots=2)
    with pytest.raises(
        AdapterFormatError, match=r"adapter_config\.json\.r: 8 is above the runtime's maximum 4"
    ):
        served.load_adapter_dir("t2", adapters["t2"])
    with pytest.raises(AdapterFormatError, match=r"target_modules: \['k_proj', 'o_proj'\] not served"):
        served.load_adapter_dir("t1", adapters["t1"])
    with pytest.raises(KeyError, match="adapter_ids: not loaded"):
        served.assign(["nobody"])
