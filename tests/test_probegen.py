"""Probes written by an LLM for chats that have none (memlab.data.probegen, ``probes``)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memlab.data import load_dataset
from memlab.data.__main__ import main
from memlab.data.loaders.native import save_native
from memlab.data.probegen import generate_probes
from memlab.data.schema import Conversation, Dataset, Session, Turn
from memlab.errors import ConfigError
from memlab.llm.mock import MockLLM

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
LINES = [
    ("Ann", "I finally adopted a rescue dog last weekend, his name is Biscuit."),
    ("Ben", "Congratulations! Where did you find him?"),
    ("Ann", "At the Riverside animal shelter, he is three years old."),
    ("Ben", "My sister Clara just moved to Lisbon for her new job as an architect."),
]


def _conversation(cid: str = "c1", days: int = 0, n_sessions: int = 2) -> Conversation:
    sessions = []
    for n in range(n_sessions):
        start = T0 + timedelta(days=days + 7 * n)
        turns = tuple(Turn(f"{cid}:s{n}:t{i}", f"{cid}:s{n}", speaker,
                           "user" if speaker == "Ann" else "other", text,
                           start + timedelta(seconds=30 * i))
                      for i, (speaker, text) in enumerate(LINES))
        sessions.append(Session(f"{cid}:s{n}", start, turns))
    return Conversation(cid, ("Ann", "Ben"), tuple(sessions), ())


def _dataset() -> Dataset:
    return Dataset("chats", (_conversation("c1"), _conversation("c2", days=30)))


def _reply(*questions: dict[str, Any]) -> str:
    return "Here you go:\n```json\n" + json.dumps({"questions": list(questions)}) + "\n```"


GOOD = {"question": "What is the name of Ann's rescue dog?", "answer": "Biscuit", "turns": [1]}
WHERE = {"question": "Where did Ann find her dog?", "answer": "Riverside animal shelter",
         "turns": "3"}


def test_grounded_proposals_become_probes_with_their_evidence_turns() -> None:
    llm = MockLLM([_reply(GOOD, WHERE)])
    generated, report = generate_probes(_dataset(), llm, per_session=2, progress=False,
                                        cache="off")
    assert report.calls == 4 and report.proposed == 8 and report.sessions == 4
    # the same two questions in a conversation's second session are duplicates
    assert report.kept == 4 and report.dropped["duplicate"] == 4
    c1 = generated.conversations[0]
    assert [p.id for p in c1.probes] == ["c1:gen1", "c1:gen2"]
    first, second = c1.probes
    assert first.question == GOOD["question"] and first.answer == "Biscuit"
    assert first.evidence_turn_ids == ("c1:s0:t0",) and first.evidence_session_ids == ("c1:s0",)
    assert second.evidence_turn_ids == ("c1:s0:t2",)
    assert first.category == "generated"
    # asked after the conversation's last turn
    assert first.asked_at == T0 + timedelta(days=7, seconds=90, minutes=1)
    generated_by = first.metadata["generated_by"]
    assert generated_by["template"] == "generate_probes" and generated_by["model"] == "mock"
    assert generated.name == "chats-generated"
    assert generated.metadata["generated_probes"]["per_session"] == 2
    assert "Conversation on" in llm.calls[0][-1]["content"]
    assert "[3] Ann: At the Riverside animal shelter" in llm.calls[0][-1]["content"]


@pytest.mark.parametrize(
    ("proposal", "reason"),
    [
        ({"question": "", "answer": "Biscuit", "turns": [1]}, "empty"),
        ({"question": "Dog name?", "answer": "Biscuit", "turns": [1]}, "empty"),
        ({"question": "What is the dog called?", "answer": "", "turns": [1]}, "empty"),
        ({"question": "What is the dog called?", "answer": "Biscuit", "turns": [9]},
         "no_turns"),
        ({"question": "What is the dog called?", "answer": "Biscuit", "turns": []},
         "no_turns"),
        # the prompt's worked example copied into a session that never mentions it
        ({"question": "What is Anna's cat called?", "answer": "Miso", "turns": [1]},
         "ungrounded"),
        ({"question": "Which pottery class did Clara take?", "answer": "architect",
          "turns": [4]}, "ungrounded"),
        ({"question": "Where does Clara work as an architect?", "answer": "architect",
          "turns": [4]}, "answer_in_question"),
        ({"question": "What new job did Ben's sister Clara take as an architect?",
          "answer": "architects", "turns": [4]}, "answer_in_question"),  # same stem
        # Ben said it (turn 4), the question puts it in Ann's mouth
        ({"question": "Where did Ann's sister Clara move?", "answer": "Lisbon", "turns": [4]},
         "wrong_speaker"),
        ("just a string", "empty"),
    ],
)
def test_each_dropped_proposal_is_counted_and_kept_as_an_issue(proposal: Any,
                                                               reason: str) -> None:
    dataset = Dataset("chats", (_conversation(),))
    generated, report = generate_probes(dataset, MockLLM([_reply(proposal)]),
                                        max_sessions=1, progress=False, cache="off")
    assert report.kept == 0 and report.dropped[reason] == 1
    (issue,) = generated.issues
    assert issue.conversation_id == "c1" and issue.action == f"dropped: {reason}"
    assert issue.record.startswith("session c1:s") and issue.record.endswith("proposal 0")


def test_evidence_only_an_assistant_said_is_dropped_unless_asked_for() -> None:
    conv = _conversation(n_sessions=1)
    session = conv.sessions[0]
    turns = tuple(replace(t, role="assistant") if t.speaker == "Ben" else t
                  for t in session.turns)
    chat = Dataset("chats", (replace(conv, sessions=(replace(session, turns=turns),)),))
    clara = {"question": "Where did Clara move for her new job?", "answer": "Lisbon",
             "turns": [4]}
    llm = MockLLM([_reply(clara, GOOD)])
    generated, report = generate_probes(chat, llm, progress=False, cache="off")
    assert report.dropped["wrong_role"] == 1 and report.kept == 1
    generated, report = generate_probes(chat, MockLLM([_reply(clara, GOOD)]),
                                        roles=["user", "assistant"], progress=False,
                                        cache="off")
    assert report.kept == 2
    assert generated.metadata["generated_probes"]["roles"] == ["user", "assistant"]


def test_a_reference_that_misses_the_answer_moves_to_the_one_turn_holding_it() -> None:
    cited_wrong = {**WHERE, "turns": [2]}  # turn 2 is Ben's question
    generated, _ = generate_probes(Dataset("chats", (_conversation(),)),
                                   MockLLM([_reply(cited_wrong)]), max_sessions=1,
                                   progress=False, cache="off")
    (probe,) = generated.conversations[0].probes
    assert probe.evidence_turn_ids[0].endswith(":t2")


def test_over_cap_and_session_time_and_kept_original_probes() -> None:
    other = {"question": "Where did Clara move for her new job?", "answer": "Lisbon",
             "turns": [4]}
    original = load_dataset("synthetic")
    conv = original.conversations[0]
    llm = MockLLM([_reply(GOOD, WHERE, other)])
    generated, report = generate_probes(Dataset("chats", (_conversation(),)), llm,
                                        per_session=2, max_sessions=1, asked_at="session",
                                        progress=False, cache="off")
    assert report.dropped["over_cap"] == 1 and report.kept == 2
    probe = generated.conversations[0].probes[0]
    (session,) = [s for s in generated.conversations[0].sessions
                  if s.id == probe.evidence_session_ids[0]]
    assert probe.asked_at == max(t.at for t in session.turns) + timedelta(minutes=1)

    kept, _ = generate_probes(original, MockLLM(["[]"]), keep_probes=True, progress=False,
                              cache="off", conversations=1)
    assert kept.conversations[0].probes == conv.probes
    assert len(kept.conversations) == 1


def test_sessions_are_sampled_deterministically_and_short_ones_skipped() -> None:
    dataset = load_dataset("synthetic")
    first = MockLLM(["[]"])
    _, report = generate_probes(dataset, first, max_sessions=3, seed=1, progress=False,
                                cache="off")
    again = MockLLM(["[]"])
    generate_probes(dataset, again, max_sessions=3, seed=1, progress=False, cache="off")
    assert report.sessions == 12 and first.calls == again.calls
    other = MockLLM(["[]"])
    generate_probes(dataset, other, max_sessions=3, seed=2, progress=False, cache="off")
    assert other.calls != first.calls
    _, short = generate_probes(dataset, MockLLM(["[]"]), min_chars=10**6, progress=False,
                               cache="off")
    assert short.calls == 0 and short.skipped_sessions == 32


def test_failed_and_unparseable_calls_are_reported_not_raised() -> None:
    dataset = Dataset("chats", (_conversation(),))
    generated, report = generate_probes(dataset, MockLLM(error="connection refused"),
                                        progress=False, cache="off")
    assert report.kept == 0 and len(report.errors) == 2
    assert "connection refused" in report.errors[0]
    assert generated.issues[0].action == "no probes: the LLM call failed"
    generated, report = generate_probes(dataset, MockLLM(["I cannot do that."]),
                                        progress=False, cache="off")
    assert "unparseable answer" in report.errors[0]
    assert generated.issues[0].action == "no probes: unparseable answer"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"per_session": 0}, "per_session must be an integer >= 1"),
        ({"max_sessions": 0}, "max_sessions must be an integer >= 1"),
        ({"grounding": 1.5}, "grounding must be"),
        ({"asked_at": "later"}, "asked_at must be one of end, session"),
        ({"template": "generate_probs"}, "generate_probes"),
        ({"roles": ["user", "bot"]}, "roles must be a non-empty list"),
        ({"roles": "user"}, "roles must be a non-empty list"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_probes(_dataset(), MockLLM(["[]"]), progress=False, **options)


def test_the_file_reads_back_and_a_second_run_is_answered_by_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    spec = {"name": "mock", "params": {"responses": [_reply(GOOD, WHERE)]}}
    generated, report = generate_probes(_dataset(), spec, progress=False)
    save_native(generated, tmp_path / "a.jsonl")
    again, cached = generate_probes(_dataset(), spec, progress=False)
    save_native(again, tmp_path / "b.jsonl")
    assert report.cached_calls == 0 and cached.cached_calls == cached.calls == 4
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    loaded = load_dataset("memlab", path=tmp_path / "a.jsonl")
    assert loaded.conversations == generated.conversations


def test_a_generated_file_is_scored_by_a_retrieval_run(tmp_path: Path) -> None:
    import memlab

    one_session = Dataset("chats", (_conversation(n_sessions=1),))
    generated, _ = generate_probes(one_session, MockLLM([_reply(GOOD, WHERE)]),
                                   progress=False, cache="off")
    path = save_native(generated, tmp_path / "gen.jsonl")
    result = memlab.evaluate({
        "name": "gen", "dataset": {"name": "memlab", "params": {"path": str(path)}},
        "chunker": {"name": "turn"}, "retrieval": {"name": "bm25"}, "k": 1,
        "tracking": {"mlflow": False}}, out=tmp_path / "run", progress=False)
    recall = result.summary["metrics"]["turn.recall_any@1"]
    # the dog's name is found first; "Where did Ann find her dog?" ranks turn 1 (Ann, dog)
    # above the shelter turn (Ann only): BM25 at k = 1 finds one of the two
    assert recall["all"]["n"] == 2 and recall["all"]["mean"] == 0.5
    assert set(recall) == {"all", "generated"}


def test_cli_writes_the_file_and_its_report(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen.jsonl"
    llm = json.dumps({"name": "mock", "params": {"responses": ["[]"]}})
    args = ["probes", "synthetic", "--out", str(out), "--llm", llm, "--quiet",
            "--max-sessions", "1", "--no-cache"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert ("0 probes kept of 0 proposed, from 4 sessions of 4 conversations (0 sessions "
            "skipped: empty or under --min-chars 200 characters)") in printed.out
    assert "warning: no proposal was kept" in printed.err
    report = json.loads((tmp_path / "gen.jsonl.report.json").read_text())
    assert report["calls"] == 4 and report["model"] == "mock"
    assert load_dataset("memlab", path=out).name == "synthetic-small-generated"
    assert main([*args, "--structured", "--force"]) == 0
    capsys.readouterr()
    assert load_dataset("memlab", path=out).metadata["generated_probes"]["structured"] is True
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    dead = json.dumps({"name": "mock", "params": {"error": "refused"}})
    gone = tmp_path / "dead.jsonl"
    assert main(["probes", "synthetic", "--out", str(gone), "--llm", dead, "--quiet",
                 "--no-cache"]) == 1
    assert "every LLM call failed" in capsys.readouterr().err and not gone.exists()
    assert main(["probes", "synthetic", "--out", str(gone), "--llm", dead, "--quiet",
                 "--min-chars", "100000"]) == 1
    assert ("error: no session to write questions about: 32 session(s) are empty or under "
            "--min-chars 100000 characters (lower it, e.g. --min-chars 0); nothing written"
            ) in capsys.readouterr().err and not gone.exists()
    assert main(["probes", "synthetic", "--out", str(tmp_path / "gen.txt"), "--llm", dead]) == 2
    assert "write a .json or .jsonl file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["probes", "locomoo", "--out", str(gone)])
    assert "unknown loader 'locomoo'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_embedded_qwen_writes_grounded_probes(tmp_path: Path) -> None:
    generated, report = generate_probes(load_dataset("synthetic"), None, conversations=1,
                                        max_sessions=2, progress=False, cache="off")
    assert report.calls == 2 and not report.errors, report.render()
    assert report.proposed >= 1 and report.prompt_tokens > 300
    conv = generated.conversations[0]
    turns = {t.id: (s.id, t) for s in conv.sessions for t in s.turns}
    for probe in conv.probes:
        (session_id,) = probe.evidence_session_ids
        assert all(turns[t][0] == session_id for t in probe.evidence_turn_ids)
        assert probe.question.endswith("?") and probe.answer
    save_native(generated, tmp_path / "qwen.jsonl")
    assert load_dataset("memlab", path=tmp_path / "qwen.jsonl").conversations == (conv,)


def test_a_long_session_is_asked_about_in_parts_that_fit() -> None:
    shelter = {"question": "Which shelter did Ann visit?", "answer": "Riverside animal shelter",
               "turns": [1]}
    llm = MockLLM([_reply(GOOD), _reply(shelter)])
    one = Dataset("chats", (_conversation(n_sessions=1),))
    generated, report = generate_probes(one, llm, max_chars=150, progress=False,
                                        cache="off", asked_at="session")
    # turns 1-2 (Ann's dog, Ben's question) and 3-4 (the shelter, Clara) are two calls
    assert report.calls == 2 and report.sessions == 1
    assert "[1] Ann: At the Riverside" in llm.calls[1][-1]["content"]
    first, second = generated.conversations[0].probes
    assert first.evidence_turn_ids == ("c1:s0:t0",)
    assert second.evidence_turn_ids == ("c1:s0:t2",)  # number 1 of the second part
    assert second.evidence_session_ids == ("c1:s0",)
    last = max(t.at for t in one.conversations[0].sessions[0].turns)
    assert first.asked_at == second.asked_at == last + timedelta(minutes=1)
    dropped, _ = generate_probes(one, MockLLM([_reply({**GOOD, "turns": [7]})]),
                                  max_chars=150, progress=False, cache="off")
    assert [i.record for i in dropped.issues] == ["session c1:s0 part 1/2 proposal 0",
                                            "session c1:s0 part 2/2 proposal 0"]


class _Recording(MockLLM):
    """A mock that records each call's per-call parameters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.overrides: list[dict[str, Any]] = []

    def generate(self, messages: Any, **overrides: Any) -> Any:
        self.overrides.append(overrides)
        return super().generate(messages, **overrides)


def test_structured_replies_are_held_to_the_probe_schema(tmp_path: Path) -> None:
    import jsonschema

    from memlab.data.probegen import probe_schema

    llm = _Recording([json.dumps({"questions": [GOOD]})])
    generated, report = generate_probes(_dataset(), llm, per_session=3, structured=True,
                                        progress=False, cache="off")
    schema = llm.overrides[0]["json_schema"]
    assert schema == probe_schema(3) and schema["properties"]["questions"]["maxItems"] == 3
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"questions": [GOOD]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"questions": [GOOD] * 4}, schema)
    assert report.kept == 2 and generated.metadata["generated_probes"]["structured"] is True
    plain = _Recording([json.dumps({"questions": [GOOD]})])
    generate_probes(_dataset(), plain, progress=False, cache="off")
    assert "json_schema" not in plain.overrides[0]
