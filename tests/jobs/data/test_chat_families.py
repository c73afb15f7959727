"""Conversations rendered by real families' chat templates in preflight (jobs/data/chat.py).

Tiny models of Qwen2.5, Qwen3, Llama 3, Gemma 2, Gemma 3, Phi-3 and Mistral carry their families' special
tokens and templates (tests/support/families.py). The data is real: the gsm8k chats with a system turn,
FastChat's ShareGPT conversations and LLaMA-Factory's DPO pairs with system turns (tests/data/realdata).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from dev.testing import run_entrypoint, write_jsonl
from jobs.data.chat import ChatRenderer, MaskPlan, check_stop_token, load_tokenizer_for_data, mask_plan
from jobs.errors import ConfigError
from tests.support.families import FAMILIES, family_model

REALDATA = Path(__file__).resolve().parents[2] / "data" / "realdata"
SYSTEM_CHATS = REALDATA / "foundry_gsm8k_chat_train.jsonl"
SHAREGPT = REALDATA / "fastchat_dummy_conversation.json"
DPO_WITH_SYSTEM = REALDATA / "llamafactory_v1_dpo_demo.jsonl"

# Where each family's assistant tokens come from: TRL's training template where TRL ships one, else turn by turn.
MASK_SOURCES = {"qwen2.5": "trl_training_template", "qwen3": "trl_training_template",
                "llama3": "trl_training_template", "gemma2": "trl_training_template",
                "gemma3": "trl_training_template", "phi3": "trl_training_template", "mistral": "turn_by_turn"}  # fmt: skip
# Families whose template refuses a system turn (Gemma 3's folds it into the first user turn itself).
NO_SYSTEM_ROLE = {"gemma2", "mistral"}


def _chat(*turns: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


GOOD = _chat(("user", "Count from 1 to 3."), ("assistant", "1 2 3"))
WITH_SYSTEM = _chat(("system", "Be brief."), ("user", "Count from 1 to 3."), ("assistant", "1 2 3"))
NOT_ALTERNATING = _chat(("user", "Count."), ("user", "From 1 to 3."), ("assistant", "1 2 3"))


def _renderer(family: str) -> ChatRenderer:
    tokenizer, template = load_tokenizer_for_data(family_model(family), None)
    assert template is not None
    return ChatRenderer(tokenizer, template, mask_plan(tokenizer, template))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_gets_its_assistant_mask_and_trains_its_closing_token(family: str) -> None:
    renderer = _renderer(family)
    assert renderer.mask is not None and renderer.mask.source == MASK_SOURCES[family]
    tokens = renderer.check(_chat(("user", "Hi"), ("assistant", "Hello"), ("user", "Count."), ("assistant", "1 2 3")))
    assert tokens is not None and len(tokens.input_ids) == len(tokens.assistant_masks)
    trained = renderer.tokenizer.decode([t for t, m in zip(tokens.input_ids, tokens.assistant_masks, strict=True) if m])
    assert "Hello" in trained and "1 2 3" in trained and "Count" not in trained and "Hi" not in trained
    stop = check_stop_token(renderer, family_model(family))
    assert stop["token"] in trained
    # Gemma 2 as built here stops on <eos> alone: the published generation config will add <end_of_turn>.
    assert stop["in_eos_ids"] == (family != "gemma2")


TOOL_CALL = [{"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
                 "name": "weather", "arguments": {"city": "Paris"}}}]}]  # fmt: skip


def _outcome(render: Any) -> str:
    try:
        return str(render())
    except Exception as error:  # the same refusal on both sides is the expected outcome
        return f"refused: {error}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_preflight_renders_the_text_apply_chat_template_gives(family: str) -> None:
    """The check renders through transformers' own renderer without apply_chat_template's wrapper: the
    text, or the refusal, must be the same. A tool call's `content: None` (which `datasets` also gives
    every message lacking a key another has) renders "None" unless dropped as apply_chat_template does."""
    renderer = _renderer(family)
    calls = [(GOOD["messages"], True), (GOOD["messages"], False), (NOT_ALTERNATING["messages"], False),
             (TOOL_CALL, False), (TOOL_CALL[:1], True)]  # fmt: skip
    for messages, generation_prompt in calls:
        expected = _outcome(lambda m=messages, g=generation_prompt: renderer.tokenizer.apply_chat_template(
            m, tokenize=False, add_generation_prompt=g, chat_template=renderer.template))  # fmt: skip
        assert (
            _outcome(lambda m=messages, g=generation_prompt: renderer.render(m, None, generation_prompt=g)) == expected
        )


def test_the_demo_template_marks_its_own_assistant_tokens(demo_model: str) -> None:
    tokenizer, template = load_tokenizer_for_data(demo_model, None)
    assert template is not None and mask_plan(tokenizer, template).source == "template_markers"


def test_a_template_without_markers_that_is_not_prefix_preserving_is_exit_2_with_the_options() -> None:
    tokenizer, _ = load_tokenizer_for_data(family_model("mistral"), None)
    # Each turn renders with the number of turns that follow it: no turn renders the same once another follows.
    template = "{% for m in messages %}{{ m['role'] }}({{ messages|length }}): {{ m['content'] }}</s>{% endfor %}"
    with pytest.raises(ConfigError, match="TRAIN_ASSISTANT_ONLY_LOSS=false") as refused:
        mask_plan(tokenizer, template)
    assert "TRAIN_CHAT_TEMPLATE_PATH" in str(refused.value) and "generation" in str(refused.value)


def test_a_mask_that_leaves_the_closing_token_untrained_is_exit_2(tmp_path: Path) -> None:
    tokenizer, _ = load_tokenizer_for_data(family_model("qwen2.5"), None)
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['role'] == 'assistant' %}{% generation %}"
                "{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip
    renderer = ChatRenderer(tokenizer, template, MaskPlan("template_markers", template))
    with pytest.raises(ConfigError, match=re.escape("closing token '<|im_end|>' outside the trained tokens")):
        check_stop_token(renderer, family_model("qwen2.5"))


@pytest.mark.parametrize(
    ("family", "bad", "message"),
    [
        ("gemma2", WITH_SYSTEM, "System role not supported; set TRAIN_FOLD_SYSTEM_TURN=true"),
        ("mistral", WITH_SYSTEM, "Conversation roles must alternate user/assistant/user/assistant/...; set "
                                 "TRAIN_FOLD_SYSTEM_TURN=true"),
        ("gemma3", NOT_ALTERNATING, "Conversation roles must alternate user/assistant/user/assistant/..."),
    ],
)  # fmt: skip
def test_a_record_the_template_refuses_is_exit_3_at_its_line_before_the_model_loads(
    family: str, bad: dict[str, Any], message: str, tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [GOOD, bad, GOOD])
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=family_model(family), TRAIN_DATA_PATH=str(data),
                         TRAIN_OUTPUT_DIR=str(tmp_path / "out"), TRAIN_MAX_STEPS="1")  # fmt: skip
    assert run.returncode == 3, run.stderr[-2000:]
    assert f"{data}:2 /messages: the model's chat template refuses this conversation: {message}" in run.stderr
    assert "Traceback" not in run.stderr and "loaded" not in run.messages()
    dropped = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=family_model(family),
                             TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "drop"),
                             TRAIN_DROP_INVALID="true", TRAIN_MAX_INVALID_FRACTION="0.5")  # fmt: skip
    assert dropped.returncode == 0, dropped.stderr[-2000:]
    report = json.loads((tmp_path / "drop" / "validation_report.json").read_text())
    assert [d["line"] for d in report["files"][0]["dropped"]] == [2] and report["split"]["train"] == 2


def test_folding_the_system_turn_trains_it_as_part_of_the_first_user_turn(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chats.jsonl", [WITH_SYSTEM, GOOD])
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=family_model("gemma2"),
                         TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "out"),
                         TRAIN_FOLD_SYSTEM_TURN="true")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    first = json.loads((tmp_path / "out" / "data" / "train.jsonl").read_text().splitlines()[0])
    assert first["messages"][0] == {"role": "user", "content": "Be brief.\n\nCount from 1 to 3."}
    assert len(first["input_ids"]) == len(first["assistant_masks"]) and 1 in first["assistant_masks"]


def test_a_model_without_a_chat_template_refuses_conversations_naming_the_setting(
    demo_model: str, tmp_path: Path
) -> None:
    model = tmp_path / "base-model"
    shutil.copytree(demo_model, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    data = write_jsonl(tmp_path / "chats.jsonl", [GOOD])
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=str(model),
                         TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "out"))  # fmt: skip
    assert run.returncode == 3, run.stderr[-2000:]
    assert f"{data}:1 /: the model's tokenizer has no chat template" in run.stderr
    assert "TRAIN_CHAT_TEMPLATE_PATH" in run.stderr and "Traceback" not in run.stderr
    # The setting it names: a .jinja file, applied in preflight as SFTTrainer applies it.
    template = Path(__file__).resolve().parents[2] / "data" / "chat_templates" / "mistral_instruct.jinja"
    fixed = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=str(model),
                           TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "fixed"),
                           TRAIN_CHAT_TEMPLATE_PATH=str(template), TRAIN_ASSISTANT_ONLY_LOSS="false")  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    chat = json.loads((tmp_path / "fixed" / "validation_report.json").read_text())["chat"]
    assert chat["template"] == "TRAIN_CHAT_TEMPLATE_PATH"


def test_the_report_shows_the_mask_its_share_and_one_record_marked(tmp_path: Path) -> None:
    long_prompt = _chat(("user", "Count on. " * 200), ("assistant", "1 2 3"))
    data = write_jsonl(tmp_path / "chats.jsonl", [GOOD, long_prompt, GOOD])
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=family_model("llama3"),
                         TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "out"),
                         TRAIN_MAX_LENGTH="64")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    chat = json.loads((tmp_path / "out" / "validation_report.json").read_text())["chat"]
    assert chat["loss_mask"] == {"assistant_only": True, "source": "trl_training_template"}
    assert 0 < chat["trained_share"] < 0.5 and chat["trained_tokens"] < chat["tokens"]
    assert chat["no_trained_tokens"]["count"] == 1 and chat["no_trained_tokens"]["examples"][0]["line"] == 2
    assert chat["example_marked"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n[[1 2 3<|eot_id|>]]")
    assert "1 record(s) keep no assistant token once truncated" in run.stderr


def test_whole_sequence_loss_is_a_setting_and_prompt_completion_keeps_trls_default(tmp_path: Path) -> None:
    chats = write_jsonl(tmp_path / "chats.jsonl", [GOOD, GOOD])
    pairs = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": [GOOD["messages"][0]], "completion": [GOOD["messages"][1]]}])
    model = family_model("mistral")
    for name, data, assistant_only, reason in (
        ("off", chats, "false", "TRAIN_ASSISTANT_ONLY_LOSS=false"),
        ("pc", pairs, "true", "completion-only loss"),
    ):
        run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=model, TRAIN_DATA_PATH=str(data),
                             TRAIN_OUTPUT_DIR=str(tmp_path / name), TRAIN_ASSISTANT_ONLY_LOSS=assistant_only)  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        chat = json.loads((tmp_path / name / "validation_report.json").read_text())["chat"]
        assert chat["loss_mask"]["assistant_only"] is False and reason in chat["loss_mask"]["reason"]
        assert "input_ids" not in (tmp_path / name / "data" / "train.jsonl").read_text()


def _sft(family: str, data: Path, out: Path) -> Any:
    return run_entrypoint(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=family_model(family), TRAIN_DATA_PATH=str(data),
                          TRAIN_OUTPUT_DIR=str(out), TRAIN_MAX_STEPS="2", TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="4",
                          TRAIN_FOLD_SYSTEM_TURN=str(family in NO_SYSTEM_ROLE).lower())  # fmt: skip


def test_a_trained_models_end_of_turn_token_is_trained_and_among_its_stop_ids(tmp_path: Path) -> None:
    """Gemma 2's <end_of_turn> closes each model turn, but its config stops on <eos> alone."""
    run = _sft("gemma2", SYSTEM_CHATS, tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    final = tmp_path / "out" / "final"
    tokenizer, _ = load_tokenizer_for_data(str(final), None)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    for line in (tmp_path / "out" / "data" / "train.jsonl").read_text().splitlines()[:50]:
        record = json.loads(line)
        closing = [m for t, m in zip(record["input_ids"], record["assistant_masks"], strict=True) if t == end_of_turn]
        assert closing[-1] == 1 and closing[0] == 0  # the user's turn's is not trained, the model's is
    generation = json.loads((final / "generation_config.json").read_text())
    assert end_of_turn in generation["eos_token_id"] and tokenizer.eos_token_id in generation["eos_token_id"]
    effective = json.loads((final / "effective_config.json").read_text())
    assert effective["loss_mask"] == {"assistant_only": True, "source": "trl_training_template"}
    # The samples' prompts, read from the rows TRL tokenised, end where the model's turn begins.
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all(s["prompt"].endswith("<end_of_turn>\n<start_of_turn>model\n") for s in samples)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_conversational_sft_trains_on_the_assistants_tokens_in_every_family(family: str, tmp_path: Path) -> None:
    # FastChat's multi-turn ShareGPT file for the family masked turn by turn; the system chats for every family.
    sources = [("chats", SYSTEM_CHATS)] + ([("sharegpt", SHAREGPT)] if MASK_SOURCES[family] == "turn_by_turn" else [])
    for name, data in sources:
        run = _sft(family, data, tmp_path / name)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        effective = json.loads((tmp_path / name / "final" / "effective_config.json").read_text())
        assert effective["loss_mask"] == {"assistant_only": True, "source": MASK_SOURCES[family]}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma2", "llama3", "mistral", "qwen2.5"])
def test_dpo_pairs_with_system_turns_train_in_every_family(family: str, tmp_path: Path) -> None:
    run = run_entrypoint(TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=family_model(family),
                         TRAIN_DATA_PATH=str(DPO_WITH_SYSTEM), TRAIN_OUTPUT_DIR=str(tmp_path / "out"),
                         TRAIN_MAX_STEPS="2", TRAIN_FOLD_SYSTEM_TURN=str(family in NO_SYSTEM_ROLE).lower())  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "final").is_dir() and "Traceback" not in run.stderr
