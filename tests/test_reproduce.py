"""reproduce.py --quick end to end, the generated page read back against the
results.json files, skipping/resuming/forcing parts, the missing-data line,
provenance, and the tqdm progress bar."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import reproduce
from lstm_ae.reporting import results_page
from conftest import REPO_ROOT, clean_env
from lstm_ae.reporting.provenance import ENTRY_SCRIPTS, code_files, code_version
from lstm_ae.engine.progress import EpochProgress

KEY = re.compile(r"`([^`]+)`")
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.ASCII)


def reproduce_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "reproduce.py", *args], cwd=REPO_ROOT,
                          env=clean_env(LSTM_AE_PROCS="1"),  # --procs auto: tested where named
                          capture_output=True, text=True, timeout=600)


def fingerprint(paths) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def committed_outputs() -> dict:
    return fingerprint(sorted((REPO_ROOT / "figures").glob("*")) + [REPO_ROOT / "RESULTS.md"])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick reproduction of all four parts into a scratch folder."""
    out = tmp_path_factory.mktemp("reproduction")
    before = committed_outputs()
    done = reproduce_cli("--quick", "--out", str(out), "--threads", "1", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert committed_outputs() == before, "the quick run touched figures/ or RESULTS.md"
    return out, done


def sections(page: str) -> dict[str, str]:
    by_title = {part.title: part.name for part in reproduce.PARTS}
    found = {}
    for chunk in page.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        found[by_title[title]] = body
    return found


def table_rows(body: str):
    """(header cells, row cells) of every table row in a section."""
    header = None
    for line in body.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(cells[0]) <= {"-", " "}:
            yield header, cells


def expected_values(results: dict, keys_cell: str) -> list:
    values = []
    for item in keys_cell.split(", "):
        names = KEY.findall(item)
        if " / " in item:
            values.append(results_page.lookup(results, names[0]) / results_page.lookup(results, names[1]))
        else:
            values.append(results_page.lookup(results, names[0]))
    return values


def agrees(text: str, value: float) -> bool:
    """text is value as printed: equal up to half a unit in its last printed digit."""
    match = NUMBER.search(text)
    number = match.group()
    scale = 100 if text[match.end():].startswith("%") else 1
    tolerance = 0.5 * 10.0 ** Decimal(number).as_tuple().exponent
    return abs(float(number) - scale * value) <= tolerance * (1 + 1e-9)


def test_quick_reproduction_writes_the_page_and_every_figure_it_shows(quick):
    out, done = quick
    page = (out / "RESULTS.md").read_text()
    parts = sections(page)
    assert list(parts) == list(reproduce.PART_NAMES)
    for name, body in parts.items():
        assert "Not run" not in body
        images = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", body)
        for _, link in images:
            assert (out / link).is_file(), link
            assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shown = {alt.split(":")[0] for alt, _ in images}
        numbered = {f"Fig {f.number}" for f in results_page.FIGURES[name] if f.number
                    and not f.needs_grid}
        assert numbered <= shown, (name, numbered - shown)
    assert "98.88%" in parts["mnist_row"] and "under 11%" in parts["mnist_pixel"]
    assert "Smoke run" in page
    linked = {Path(link).name for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)}
    drawn = {path.name for path in out.glob("*/figures/*.png")}    # OUT/<part>/figures/
    assert drawn == linked, ("drawn but not on the page", drawn - linked)


def test_every_number_on_the_page_is_the_one_in_its_results_json(quick):
    out, _ = quick
    checked = 0
    for name, body in sections((out / "RESULTS.md").read_text()).items():
        results = json.loads((out / name / "results.json").read_text())
        script = next(p.script for p in reproduce.PARTS if p.name == name)
        assert results["provenance"]["code_version"] == code_version(script=script)
        assert results["provenance"]["command"].startswith(f"python {script} --quick")
        shown = results_page.without_machine_paths(results["provenance"]["command"])
        assert f"    {shown}\n" in body and "/tmp/" not in shown
        for header, cells in table_rows(body):
            values = expected_values(results, cells[-1])
            shown = [cells[header.index(column)] for column in ("this run", "baseline", "value")
                     if column in header]
            if values and all(isinstance(v, bool) for v in values):
                assert shown == [", ".join("yes" if v else "no" for v in values)], (name, cells)
                continue
            if all(isinstance(v, str) for v in values):
                assert shown == [", ".join(values)], (name, cells)
                continue
            texts = [t for cell in shown for t in re.split(r";\s*", cell) if t]
            assert len(texts) == len(values), (name, cells)
            for text, value in zip(texts, values):
                assert agrees(text, value), (name, cells[0], text, value)
                checked += 1
    assert checked >= 30


def test_rerun_skips_current_parts_and_page_only_gives_the_same_bytes(quick):
    out, _ = quick
    page = (out / "RESULTS.md").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")}
    done = reproduce_cli("--quick", "--out", str(out), "--threads", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("skipped") == 4
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    assert (out / "RESULTS.md").read_bytes() == page
    assert reproduce.main(["--quick", "--out", str(out), "--page-only"]) == 0
    assert (out / "RESULTS.md").read_bytes() == page


def test_a_change_to_one_script_reruns_only_its_part(quick, monkeypatch, capsys):
    out, _ = quick
    calls = []
    monkeypatch.setattr(reproduce, "run_part", lambda command: calls.append(command) or 0)
    real = reproduce.code_version
    monkeypatch.setattr(reproduce, "code_version", lambda script=None: (
        "sha256:edited" if script == "lstm_ae_toy.py" else real(script=script)))
    marker = out / "toy" / "reproduce.json"
    kept = marker.read_bytes()
    try:
        reproduce.main(["--quick", "--out", str(out), "--threads", "1", "--quiet"])
    finally:
        marker.write_bytes(kept)        # the other tests share this reproduction
    assert [command[1] for command in calls] == ["lstm_ae_toy.py"]
    assert capsys.readouterr().out.count("skipped") == 3


def test_code_version_of_a_script_ignores_the_other_scripts(tmp_path):
    for name in (*ENTRY_SCRIPTS, "models.py", "reproduce.py", "lstm_ae/engine/loop.py",
                 "lstm_ae/reporting/page.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    assert {part.script for part in reproduce.PARTS} == set(ENTRY_SCRIPTS)
    toy, mnist = "lstm_ae_toy.py", "lstm_ae_mnist.py"
    names = {path.relative_to(tmp_path).as_posix() for path in code_files(tmp_path, toy)}
    assert names == {toy, "models.py", "lstm_ae/engine/loop.py"}
    before = {script: code_version(tmp_path, script) for script in (toy, mnist, None)}
    assert len(set(before.values())) == 3
    (tmp_path / mnist).write_text("# the pixel recipe changed\n")
    after = {script: code_version(tmp_path, script) for script in (toy, mnist, None)}
    assert after[toy] == before[toy] and after[mnist] != before[mnist] and after[None] != before[None]
    (tmp_path / "lstm_ae/engine/loop.py").write_text("# the loop changed\n")
    assert code_version(tmp_path, toy) != after[toy]
    current = code_version(tmp_path, mnist)
    (tmp_path / "reproduce.py").write_text("# not code\n")
    (tmp_path / "lstm_ae/reporting/page.py").write_text("# not code\n")
    assert code_version(tmp_path, mnist) == current


def test_interrupted_part_resumes(quick):
    out, _ = quick
    toy = out / "toy" / "results.json"
    before = json.loads(toy.read_text())
    toy.unlink()       # as if the run stopped before its results: the marker remains
    done = reproduce_cli("--quick", "--out", str(out), "--threads", "1", "--parts", "toy")
    assert done.returncode == 0, done.stderr
    assert "--resume" in done.stdout and "resuming from" in done.stdout
    assert json.loads(toy.read_text())["test_mse"] == before["test_mse"]


def test_force_reruns_current_parts_afresh(quick, monkeypatch, capsys):
    out, _ = quick
    calls = []
    monkeypatch.setattr(reproduce, "run_part", lambda command: calls.append(command) or 0)
    reproduce.main(["--quick", "--out", str(out), "--threads", "1", "--quiet", "--parts", "toy",
                    "mnist_row"])
    assert calls == [] and capsys.readouterr().out.count("skipped") == 2
    reproduce.main(["--quick", "--out", str(out), "--threads", "1", "--quiet", "--parts", "toy",
                    "mnist_row", "--force"])
    assert [command[1] for command in calls] == ["lstm_ae_toy.py", "lstm_ae_mnist.py"]
    assert all("--resume" not in command for command in calls)


def test_a_stopped_part_gets_one_line_and_the_same_command_continues(quick, monkeypatch, capsys):
    out, _ = quick
    (out / "toy" / "results.json").unlink()          # the toy part is to run again
    monkeypatch.setattr(reproduce, "run_part", lambda command: 130)   # as after Ctrl-C
    with pytest.raises(SystemExit) as stopped:
        reproduce.main(["--quick", "--out", str(out), "--threads", "1", "--parts", "toy"])
    assert stopped.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["reproduce.py: stopped during part toy (its line above says what it saved); "
                   "run the same command again to continue it: finished parts are skipped"]


def test_a_part_that_finished_before_the_stop_is_said_to_have_finished(tmp_path):
    argv, version = ["--quick"], code_version()
    assert reproduce.stopped_line("toy", tmp_path, argv, version).startswith(
        "stopped during part toy")
    (tmp_path / "results.json").write_text(json.dumps(
        {"provenance": {"argv": argv, "code_version": version}}))
    assert reproduce.stopped_line("toy", tmp_path, argv, version) == (
        "stopped after part toy finished; run the same command again for the parts left: "
        "finished parts are skipped")


def test_page_only_on_a_quick_folder_keeps_the_smoke_run_note(quick):
    out, _ = quick
    page = (out / "RESULTS.md").read_bytes()
    try:
        assert reproduce.main(["--out", str(out), "--page-only"]) == 0     # no --quick
        assert (out / "RESULTS.md").read_bytes() == page and b"Smoke run" in page
    finally:
        (out / "RESULTS.md").write_bytes(page)


def test_run_part_passes_a_signal_on_and_waits_for_the_part(monkeypatch):
    import os, signal, threading
    monkeypatch.setattr(reproduce, "REPO_ROOT", Path.cwd())
    # A part that saves on SIGINT and exits 130, as the scripts do; SIGINT reaches only
    # reproduce.py (as with kill -INT PID), which must pass it on and wait.
    part = ("import signal, sys, time\n"
            "def stop(*_):\n    print('saved', flush=True); sys.exit(130)\n"
            "signal.signal(signal.SIGINT, stop)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    began = __import__("time").monotonic()
    try:
        status = reproduce.run_part([sys.executable, "-c", part])
    finally:
        timer.cancel()
    assert status == 130
    assert __import__("time").monotonic() - began < 30


def test_part_state(tmp_path):
    argv, version = ["--quick", "--workers", "1"], code_version()
    assert reproduce.part_state(tmp_path, argv, version) == "new"
    (tmp_path / "reproduce.json").write_text(json.dumps({"argv": argv, "code_version": version}))
    assert reproduce.part_state(tmp_path, argv, version) == "started"
    assert reproduce.part_state(tmp_path, argv, "sha256:other") == "new"
    provenance = {"argv": argv + ["--resume"], "code_version": version}
    (tmp_path / "results.json").write_text(json.dumps({"provenance": provenance}))
    assert reproduce.part_state(tmp_path, argv, version) == "done"
    assert reproduce.part_state(tmp_path, argv + ["--epochs", "3"], version) == "new"
    assert reproduce.part_state(tmp_path, ["--quick"], version) == "new"


def test_missing_sp500_data_is_asked_for_in_one_line(tmp_path, capsys):
    from lstm_ae.datasets.prices import KAGGLE_FILE
    if (REPO_ROOT / "data" / KAGGLE_FILE).exists():
        pytest.skip("this checkout has the default S&P 500 file")
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--parts", "toy", "snp500", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data" in err and "LSTM_AE_SP500_CSV" in err
    assert "--parts toy" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        reproduce.main(["--parts", "snp500", "--data", str(tmp_path / "nope.csv"),
                        "--out", str(tmp_path)])
    assert "nope.csv does not exist" in capsys.readouterr().err


def test_quick_refuses_to_write_into_the_repository(capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--quick", "--out", str(REPO_ROOT)])
    assert exit_info.value.code == 2
    assert "figures/" in capsys.readouterr().err


def test_page_lists_parts_without_results_as_not_run(tmp_path):
    (tmp_path / "toy").mkdir(parents=True)
    (tmp_path / "toy" / "results.json").write_text(json.dumps({"test_mse": 0.25}))
    assert reproduce.main(["--out", str(tmp_path), "--page-only"]) == 0
    page = (tmp_path / "RESULTS.md").read_text()
    assert page.count("Not run") == 3 and "**0.25**" in page
    assert "    python lstm_ae_snp500.py --data PATH/TO/prices.csv.gz\n" in page
    assert "    python lstm_ae_mnist.py --input pixel\n" in page


def test_page_only_without_any_results_refuses_instead_of_blanking_the_page(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--out", str(tmp_path), "--page-only"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.json" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--quick", "--out", "{file}"], "is not a folder"),
    (["--page-only", "--out", "{file}"], "is not a folder"),
    (["--parts", "foo"], "invalid choice: 'foo'"),
    (["--threads", "abc"], "invalid int value"),
])
def test_bad_reproduce_flags_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main([a.format(file=tmp_path / "a_file") for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_shows_rate_and_time_left(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = EpochProgress("[final] ", 2, 5, 40)
    for done in range(1, 41):
        progress.update(done, lambda: 0.125)
        if done == 20:
            progress.bar.refresh()
    progress.close()
    text = terminal.getvalue()
    assert "[final] epoch 2/5" in text and "20/40" in text
    assert "batch/s" in text and "loss 0.12500" in text and "left" in text


def test_progress_is_silent_when_stderr_is_not_a_terminal(capsys):
    progress = EpochProgress("", 1, 3, 10)
    for done in range(1, 11):
        progress.update(done, lambda: 1.0)
    progress.close()
    assert capsys.readouterr().err == ""


def test_a_part_file_that_is_not_a_json_object_reads_as_absent(tmp_path):
    # A results.json or reproduce.json holding a list (or garbage) is no run of this
    # command: the part is new, not a crash, and no smoke-run note is kept.
    (tmp_path / "results.json").write_text("[1, 2]")
    (tmp_path / "reproduce.json").write_text("not json")
    assert reproduce.part_state(tmp_path, ["--seed", "0"], "sha256:x") == "new"
    assert reproduce.from_quick_run(tmp_path / "results.json") is False
    (tmp_path / "results.json").write_text(json.dumps({"provenance": {"argv": ["--quick"]}}))
    assert reproduce.from_quick_run(tmp_path / "results.json") is True
