"""End to end with a remote judge: the real gate (`pytest evals`) against the scripted server of tests/judge_server.py.

The gate runs in a subprocess on an 8-sample slice of the demo, as in test_e2e.py, with the judge
pointed at a 127.0.0.1 server through `--tunegate-set 'judge={backend="openai", ...}'` and the key
in an environment variable set only in the child's environment. The demo's prompts hold no fault
markers, so faults are keyed by question (`faults_by_question`): transient ones (429 with
Retry-After, 500, a hang past timeout_s, a truncated body) cost exactly their retries and end in
the right score; permanent ones (a score out of range, a refusal) are judge errors, asked once per
run, counted against the error budget and never scored. A second server checks that a run killed
with SIGKILL and rerun asks for nothing it had already cached. The key must appear nowhere.

One cold generation (8 samples x 3 modes) for the module; every later run reads it from the cache.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.judge_server import Call, JudgeServer, expected_scores, expected_winner, request_hash
from tunegate.cache import DiskCache
from tunegate.config import load_config
from tunegate.data import load_eval_set
from tunegate.judge import DIMENSIONS, JudgeRequest, build_requests, metric_names, request_key
from tunegate.judge_remote import OpenAICompatibleJudge
from tunegate.run import GateRun

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SLICE = 8
MODES = ("base", "prompt_eng", "finetuned")
KEY = "tg-e2e-SECRET-5b7c0e91d3a4"  # not sk-shaped: only the exact-key layer of the scrubber can catch it
KEY_ENV = "TUNEGATE_E2E_JUDGE_KEY"
MODEL = "judge-test"
TIMEOUT_S = 1.5
# Sample id -> fault, applied to every judgement whose question is that sample's prompt.
TRANSIENT = {
    "refund_window_010": "429:1:0.2",  # one 429 with Retry-After: 0.2, then a good answer
    "refund_status_000": "500:1",  # one 500 (backoff with jitter), then a good answer
    "refund_status_017": "hang:1:2.5",  # one answer 2.5 s late, past timeout_s: retried
    "return_label_008": "badjson:1",  # one truncated 200 body, then a good answer
}
PERMANENT = {
    "refund_window_011": "range",  # accuracy 7, every time: a judge error
    "return_label_018": "refusal",  # message.refusal, every time: a judge error
}
ERROR_TEXT = {  # what a permanent fault's judge error says, per kind
    ("refund_window_011", "score"): "accuracy = 7 is out of range 1-5",
    ("refund_window_011", "pairwise"): "winner is None, not 'A', 'B' or 'tie'",
    ("return_label_018", "score"): "refusal: I can't help with grading this content.",
    ("return_label_018", "pairwise"): "refusal: I can't help with grading this content.",
}
JUDGE_ERROR_GATES = {f"evals/test_judge.py::test_judge_errors[{kind}]" for kind in ("reference", "blind", "pairwise")}


def judge_table(url: str, **options: Any) -> dict[str, Any]:
    return {"backend": "openai", "model": MODEL, "base_url": url, "api_key_env": KEY_ENV,
            "kinds": ["reference", "blind", "pairwise"], "timeout_s": TIMEOUT_S, "concurrency": 4, "max_retries": 3,
            "error_budget": 0.0, **options}


def toml_inline(table: Mapping[str, Any]) -> str:
    """An inline TOML table (strings, numbers, lists of strings: all that judge_table holds)."""
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "}"


@dataclass(frozen=True)
class GateProcess:
    """One `pytest evals` run in a subprocess, and the requests the server received during it."""

    returncode: int
    stdout: str
    stderr: str
    calls: list[Call]
    seconds: float

    @property
    def failed(self) -> set[str]:
        return {line.split()[1] for line in self.stdout.splitlines() if line.startswith("FAILED ")}

    def verdict(self, name: str) -> str:
        """The gate's line in 'tunegate: release gate verdicts' (PASS/FAIL name: message)."""
        found = re.findall(rf"^(?:PASS|FAIL) {re.escape(name)}: .*$", self.stdout, re.MULTILINE)
        assert len(found) == 1, self.tail()
        return found[0]

    def usage_total(self) -> dict[str, int]:
        """The total row of the judge usage table the run printed."""
        found = re.search(r"^\s*total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s", self.stdout, re.MULTILINE)
        assert found, self.tail()
        return dict(zip(("judgements", "cached", "calls", "errors"), map(int, found.groups())))

    def tail(self) -> str:
        return self.stdout[-5000:] + self.stderr[-2000:]


def gate_command(work: Path, cache: Path, judge: Mapping[str, Any], report: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider", "-m", "finetuned",
        "--eval-limit", str(SLICE),
        "--tunegate-cache", str(cache),
        "--report-dir", str(work / "reports"),
        f"--html={work / report}",
        "--threshold", "finetuned.rougeL=0.20",  # as test_e2e.py: the configured floor is for all 50 samples
        "--tunegate-set", f"judge={toml_inline(judge)}",
    ]


def child_env() -> dict[str, str]:
    return {**os.environ, KEY_ENV: KEY}


def run_gate(work: Path, server: JudgeServer, cache: Path, judge: Mapping[str, Any], report: str) -> GateProcess:
    before = server.calls
    started = time.monotonic()
    done = subprocess.run(gate_command(work, cache, judge, report), cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    (work / f"{report}.out").write_text(done.stdout + done.stderr, encoding="utf-8")  # scanned for the key
    return GateProcess(done.returncode, done.stdout, done.stderr, list(server.log[before:]), seconds)


def settle(server: JudgeServer) -> int:
    """server.calls once nothing more arrives (requests a killed client sent just before dying)."""
    settled = -1
    while settled != server.calls:
        settled = server.calls
        time.sleep(0.3)
    return settled


# -- module fixtures: one cold generation, then everything cached -------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Path:
    assert KEY_ENV not in os.environ  # the key reaches the gate only through the child's environment
    work = tmp_path_factory.mktemp("judge_e2e")
    (work / "cache").mkdir()
    (work / "cache" / "models").symlink_to(demo_model_dir.parent, target_is_directory=True)
    return work


@pytest.fixture(scope="module")
def faults() -> dict[str, str]:
    """Question substring (the sample's whole prompt) -> fault spec, for faults_by_question."""
    samples = {s.id: s for s in load_eval_set(REPO / "fixtures/demo/test.jsonl", limit=SLICE)}
    prompts = [s.prompt for s in samples.values()]
    assert not any(a in b for a in prompts for b in prompts if a is not b)  # each key matches one sample only
    return {samples[sample_id].prompt: spec for sample_id, spec in {**TRANSIENT, **PERMANENT}.items()}


@pytest.fixture(scope="module")
def fault_server(faults: dict[str, str]) -> Iterator[JudgeServer]:
    with JudgeServer(api_key=KEY, faults_by_question=faults) as server:
        yield server


@pytest.fixture(scope="module")
def faulty_run(workdir: Path, fault_server: JudgeServer) -> GateProcess:
    """Error budget 0: the permanent faults must fail the three judge error gates."""
    return run_gate(workdir, fault_server, workdir / "cache", judge_table(fault_server.url), "faulty.html")


@pytest.fixture(scope="module")
def generous_rerun(workdir: Path, fault_server: JudgeServer, faulty_run: GateProcess) -> GateProcess:
    """The same run again with an error budget of 30%: only the judge errors are asked again."""
    judge = judge_table(fault_server.url, error_budget=0.3)
    return run_gate(workdir, fault_server, workdir / "cache", judge, "rerun.html")


@dataclass(frozen=True)
class InProcess:
    run: GateRun
    requests: list[JudgeRequest]  # every judgement of the run: reference and blind per mode, then pairwise
    calls: list[Call]  # what the in-process run itself sent (only the judge errors: the rest is cached)


def all_requests(run: GateRun) -> list[JudgeRequest]:
    answers = {mode: [g.text for g in run.generations(mode, progress=False)] for mode in MODES}
    requests = [request for kind in ("reference", "blind") for mode in MODES
                for request in build_requests(kind, run.samples, {mode: answers[mode]})]
    return requests + build_requests("pairwise", run.samples, answers, opponent="prompt_eng")


@pytest.fixture(scope="module")
def in_process(workdir: Path, fault_server: JudgeServer, generous_rerun: GateProcess) -> Iterator[InProcess]:
    """A GateRun on the subprocesses' configuration and cache: generations and judgements are read back."""
    config = load_config(
        REPO / "pyproject.toml",
        {"judge": judge_table(fault_server.url, error_budget=0.3), "limit": SLICE, "cache_dir": str(workdir / "cache"),
         "report_dir": str(workdir / "reports"), "thresholds": {"finetuned": {"rougeL": 0.20}}},
        override_base=REPO,
    )
    run = GateRun(config)
    requests = all_requests(run)
    before = fault_server.calls
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        for mode in MODES:
            run.scores(mode)
        run.pairwise()
    yield InProcess(run, requests, list(fault_server.log[before:]))
    backend = run.judge_backend()
    if isinstance(backend, OpenAICompatibleJudge):
        backend.close()


def faulted(request: JudgeRequest, table: Mapping[str, str]) -> bool:
    return request.sample_id in table


def expected_calls(requests: Sequence[JudgeRequest], *, fresh: bool) -> Counter[str]:
    """Requests the server must receive per content hash in one run.

    fresh: nothing cached yet, so every judgement is asked, and each content of a transiently faulted
    sample costs one request more (its fault's TIMES is 1, counted per content by the server; two
    judgements with the same content, two modes that gave the same answer, share that one fault).
    Not fresh: only the judgements with permanent faults are asked again, once each.
    """
    counts: Counter[str] = Counter()
    for request in requests:
        if fresh or faulted(request, PERMANENT):
            counts[request_hash(request)] += 1
    if fresh:
        for digest in {request_hash(r) for r in requests if faulted(r, TRANSIENT)}:
            counts[digest] += 1
    return counts


# -- 1. faults injected: exit code, failing gates, call counts, scores ---------------------------


def test_permanent_faults_fail_exactly_the_judge_error_gates_with_exact_counts(faulty_run: GateProcess) -> None:
    assert faulty_run.returncode == 1, faulty_run.tail()
    assert faulty_run.failed == JUDGE_ERROR_GATES, faulty_run.tail()
    for kind, judgements, shown in (("reference", 24, 5), ("blind", 24, 5), ("pairwise", 16, 4)):
        errors = len(PERMANENT) * (3 if kind != "pairwise" else 2)
        line = faulty_run.verdict(f"judge_errors[{kind}]")
        head = (f"FAIL judge_errors[{kind}]: {kind}: {errors}/{judgements} judgements failed "
                f"({errors / judgements:.1%} > error budget 0.0%); e.g. ")
        assert line.startswith(head), line
        # mode/sample_id: message; ...; message (+N more). Pairwise names the order: "(candidate first)".
        item = r"([a-z_-]+)/([a-z_0-9]+)(?: \(candidate (?:first|second)\))?: "
        named = re.findall(rf"{item}(.*?)(?=; {item}| \(\+\d+ more\)$|$)", line[len(head):])
        named = [(mode, sample_id, message) for mode, sample_id, message, *_ in named]
        assert len(named) == shown, line
        if kind == "pairwise":
            assert line.count("(candidate first)") == line.count("(candidate second)") == 2, line
        else:
            assert {mode for mode, _, _ in named} == set(MODES), line  # examples span every mode
        modes = MODES if kind != "pairwise" else ("finetuned-vs-prompt_eng",)
        for mode, sample_id, message in named:
            assert mode in modes and sample_id in PERMANENT, line
            assert message == ERROR_TEXT[sample_id, "pairwise" if kind == "pairwise" else "score"], line
        assert {s for _, s, _ in named} == set(PERMANENT)  # both failing samples are named
        assert line.endswith(f" (+{errors - shown} more)") == (errors > shown), line


def test_each_transient_fault_costs_its_retries_and_each_permanent_one_a_single_call(
    faulty_run: GateProcess, in_process: InProcess
) -> None:
    requests = in_process.requests
    assert len(requests) == 2 * len(MODES) * SLICE + 2 * SLICE == 64
    calls = Counter(call.content for call in faulty_run.calls)
    assert calls == expected_calls(requests, fresh=True)
    transient_contents = {request_hash(r) for r in requests if faulted(r, TRANSIENT)}
    served = Counter(call.fault for call in faulty_run.calls)
    expected_faults = {spec.split(":")[0]: len({request_hash(r) for r in requests if r.sample_id == sample_id})
                       for sample_id, spec in TRANSIENT.items()}
    expected_faults |= {spec: sum(r.sample_id == sample_id for r in requests) for sample_id, spec in PERMANENT.items()}
    assert {fault: n for fault, n in served.items() if fault is not None} == expected_faults
    assert served[None] == len(requests) - sum(faulted(r, PERMANENT) for r in requests)  # one good answer per score
    assert len(faulty_run.calls) == len(requests) + len(transient_contents)  # 96 when no two judgements share a content
    # tunegate's own accounting agrees with the server's.
    assert faulty_run.usage_total() == {"judgements": 64, "cached": 0, "calls": len(faulty_run.calls), "errors": 16}


def test_judge_scores_are_the_servers_and_errors_leave_no_rows(in_process: InProcess) -> None:
    run = in_process.run
    for mode in MODES:
        table = run.scores(mode)
        rows = table[table["metric"].str.startswith(("judge_", "blind_"))]
        actual = {(r.sample_id, r.metric): r.value for r in rows.itertuples()}
        assert len(actual) == len(rows)  # one row per sample and metric
        expected: dict[tuple[str, str], float] = {}
        for generation in run.generations(mode):
            if generation.sample_id in PERMANENT:
                continue  # a judge error is never a score
            scores = expected_scores(generation.text)
            for kind in ("reference", "blind"):
                values = [scores[d] for d in DIMENSIONS]
                for name, value in zip(metric_names(kind), [*values, sum(values) / 3]):
                    expected[generation.sample_id, name] = value
        assert actual == pytest.approx(expected, abs=1e-12), mode
        assert len(expected) == (SLICE - len(PERMANENT)) * 8


def test_pairwise_verdicts_are_the_servers_and_the_run_printed_the_same(
    in_process: InProcess, faulty_run: GateProcess
) -> None:
    run = in_process.run
    result = run.pairwise()
    assert result is not None and result.errors == len(PERMANENT)
    ours = {g.sample_id: g.text for g in run.generations("finetuned")}
    theirs = {g.sample_id: g.text for g in run.generations("prompt_eng")}
    expected = {}
    for sample_id in ours:
        if sample_id in PERMANENT:
            continue
        first = expected_winner(ours[sample_id], theirs[sample_id]) == "A"  # candidate shown as A
        second = expected_winner(theirs[sample_id], ours[sample_id]) == "B"  # candidate shown as B
        lost = expected_winner(ours[sample_id], theirs[sample_id]) == "B"
        expected[sample_id] = 1 if first and second else -1 if lost else 0
    assert dict(result.outcomes) == expected
    assert f"pairwise: {result.summary()}" in faulty_run.stdout  # the gate's line, same seed, same numbers


def test_a_rerun_asks_only_for_the_judge_errors(
    faulty_run: GateProcess, generous_rerun: GateProcess, in_process: InProcess
) -> None:
    requests = in_process.requests
    assert generous_rerun.returncode == 0, generous_rerun.tail()
    assert not generous_rerun.failed
    assert "new answers: base 0, prompt_eng 0, finetuned 0" in generous_rerun.stdout
    for kind, judgements in (("reference", 24), ("blind", 24), ("pairwise", 16)):
        errors = len(PERMANENT) * (3 if kind != "pairwise" else 2)
        assert generous_rerun.verdict(f"judge_errors[{kind}]").startswith(
            f"PASS judge_errors[{kind}]: {kind}: {errors}/{judgements} judgements failed "
            f"({errors / judgements:.1%} <= error budget 30.0%)")
    again = Counter(call.content for call in generous_rerun.calls)
    assert again == expected_calls(requests, fresh=False)  # the 16 errors, once each; nothing that succeeded
    assert sum(again.values()) == 16
    assert {call.fault for call in generous_rerun.calls} == set(PERMANENT.values())
    assert generous_rerun.usage_total() == {"judgements": 64, "cached": 48, "calls": 16, "errors": 16}
    # The in-process run on the same cache: the same, once more.
    assert Counter(call.content for call in in_process.calls) == expected_calls(requests, fresh=False)


# -- 2. a killed run resumes without repeating a call -------------------------------------------


@dataclass(frozen=True)
class Resumed:
    cached_at_kill: int
    total: int
    calls_before_kill: int
    new_calls: list[str]  # content hashes the resumed run sent
    expected_new: Counter[str]  # content hashes of the judgements not cached at the kill
    cached_contents: set[str]  # content hashes whose every judgement was cached at the kill
    resumed: GateProcess


@pytest.fixture(scope="module")
def killed_and_resumed(workdir: Path, faulty_run: GateProcess, in_process: InProcess) -> Resumed:
    """A run SIGKILLed once its judge cache holds some entries, then rerun to completion.

    Its own cache directory (the first one's generations and scores, through symlinks, but its own
    judge/), a slow server and low concurrency, so the kill lands in the middle of judging.
    """
    cache = workdir / "cache-kill"
    cache.mkdir()
    for entry in (workdir / "cache").iterdir():
        if entry.name != "judge":
            (cache / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
    judge_cache = DiskCache(cache, "judge")
    requests = in_process.requests
    with JudgeServer(api_key=KEY, delay_s=0.25) as server:
        judge = judge_table(server.url, concurrency=2, timeout_s=10.0)
        with open(workdir / "killed.out", "w", encoding="utf-8") as out:
            child = subprocess.Popen(gate_command(workdir, cache, judge, "killed.html"), cwd=REPO, env=child_env(),
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                deadline = time.monotonic() + 300
                while len(judge_cache) < 12:
                    assert child.poll() is None, (workdir / "killed.out").read_text(encoding="utf-8")[-3000:]
                    assert time.monotonic() < deadline, "the gate cached no judgement in 300 s"
                    time.sleep(0.02)
            finally:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL)  # its own process group: the gate and anything it started
                child.wait()
        assert child.returncode == -signal.SIGKILL
        settled = settle(server)
        identity = f"openai-compatible:{MODEL}@{server.url}"
        cached = [r for r in requests if judge_cache.get(request_key(identity, r)) is not None]
        assert len(cached) == len(judge_cache)  # every entry on disk is one of this run's judgements
        resumed = run_gate(workdir, server, cache, judge, "resumed.html")
    cached_contents = {request_hash(r) for r in cached} - {request_hash(r) for r in requests if r not in cached}
    return Resumed(
        cached_at_kill=len(cached), total=len(requests), calls_before_kill=settled,
        new_calls=[call.content for call in resumed.calls],
        expected_new=Counter(request_hash(r) for r in requests if r not in cached),
        cached_contents=cached_contents, resumed=resumed,
    )


def test_a_killed_and_restarted_run_makes_no_repeated_call(killed_and_resumed: Resumed) -> None:
    result = killed_and_resumed
    k, total = result.cached_at_kill, result.total
    assert 12 <= k < total  # killed in the middle of judging
    assert result.calls_before_kill >= k
    assert result.resumed.returncode == 0, result.resumed.tail()
    assert len(result.new_calls) == total - k
    assert Counter(result.new_calls) == result.expected_new  # exactly the judgements it lacked, once each
    assert not set(result.new_calls) & result.cached_contents  # nothing cached before the kill was asked again
    assert result.resumed.usage_total() == {"judgements": total, "cached": k, "calls": total - k, "errors": 0}


# -- 3. the key appears nowhere ------------------------------------------------------------------


def test_the_key_appears_in_no_output_report_or_cache_file(
    workdir: Path, faulty_run: GateProcess, generous_rerun: GateProcess, killed_and_resumed: Resumed
) -> None:
    runs = [faulty_run, generous_rerun, killed_and_resumed.resumed]
    assert all("tunegate: LLM judge" in r.stdout for r in runs)  # the runs did judge
    reports = [workdir / name for name in ("faulty.html", "rerun.html", "killed.html", "resumed.html")]
    assert all(path.is_file() for path in reports if path.name != "killed.html")
    judge_files = [p for p in (workdir / "cache" / "judge").rglob("*.json")] + [
        p for p in (workdir / "cache-kill" / "judge").rglob("*.json")]
    assert len(judge_files) >= 48 + 64  # the scan below covers real judgements
    scanned, leaks = 0, []
    # Every file under the work directory: both caches (not the shared model through its symlink),
    # the HTML reports, plots, and the stdout and stderr of every run, the killed one included.
    for root, _, names in os.walk(workdir):  # followlinks=False
        for name in names:
            path = Path(root) / name
            if path.is_symlink():
                continue
            scanned += 1
            if KEY.encode() in path.read_bytes():
                leaks.append(str(path.relative_to(workdir)))
    leaks += [f"stdout/stderr of run {i}" for i, r in enumerate(runs) if KEY in r.stdout or KEY in r.stderr]
    assert scanned > 100
    assert not leaks, f"{len(leaks)} places hold the key: {leaks}"  # paths only, never the text around it


def test_judge_scores_flow_into_the_same_gates_as_rouge(in_process: InProcess) -> None:
    """Thresholds and gain gates take judge metrics; samples the judge failed on are left out of them."""
    from tunegate.gates import gain_checks, threshold_gate

    run = in_process.run
    table = run.score_table()
    floor = threshold_gate(table, "finetuned", "judge_overall", 1.0)
    assert floor.passed and f"n={SLICE - len(PERMANENT)}" in floor.message
    checks = gain_checks(table, ["rougeL", "judge_overall"], ["base"], iters=1000)
    sizes = {check.metric: check.comparison.n for check in checks}
    assert sizes == {"rougeL": SLICE, "judge_overall": SLICE - len(PERMANENT)}
