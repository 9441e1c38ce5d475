"""The README and docs/ stay true: every command they show parses with its script's
parser, the README's --quick commands run end to end on stand-in data, the README's
Python example runs on a checkpoint, the links point at files and headings that
exist, and the README stays a short guide (no issue numbers, no machine paths)."""

from __future__ import annotations

import hashlib
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, clean_env, script_settings
from lstm_ae.datasets.standins import write_mnist, write_prices_csv

README = REPO_ROOT / "README.md"
DOC_PAGES = sorted((REPO_ROOT / "docs").glob("*.md"))
SCRIPTS = {"lstm_ae_toy.py", "lstm_ae_mnist.py", "lstm_ae_snp500.py", "reproduce.py"}
PRICES_PLACEHOLDER = "path/to/prices.csv.gz"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
ENV_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def fenced_blocks(path: Path, languages: tuple) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang in languages]


def shell_commands(path: Path) -> list[list[str]]:
    """Each command line of the shell blocks, continuations joined, comments and
    environment prefixes (VAR=value) removed, as argv tokens."""
    commands = []
    for block in fenced_blocks(path, ("bash", "sh", "shell", "console")):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens and ENV_PREFIX.match(tokens[0]):
                tokens.pop(0)
            if tokens:
                commands.append(tokens)
    return commands


def script_argv(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(script, its arguments) of `python SCRIPT ...` or `torchrun ... SCRIPT ...`
    for the four scripts of this repository; None for any other command."""
    if len(tokens) >= 2 and tokens[0] in ("python", "python3") and tokens[1] in SCRIPTS:
        return tokens[1], tokens[2:]
    if tokens and tokens[0] == "torchrun":
        for k, token in enumerate(tokens):
            if token in SCRIPTS:
                return token, tokens[k + 1:]
    return None


def documented_commands(path: Path) -> list[tuple[str, list[str]]]:
    return [found for tokens in shell_commands(path) if (found := script_argv(tokens))]


def label(path: Path, script: str, argv: list[str]) -> str:
    return f"{path.relative_to(REPO_ROOT)}: {script} {' '.join(argv)}".strip()


ALL_COMMANDS = [(path, script, argv) for path in [README, *DOC_PAGES]
                for script, argv in documented_commands(path)]
README_QUICK = [(script, argv) for script, argv in documented_commands(README)
                if "--quick" in argv and script != "reproduce.py"]  # reproduce: test_reproduce.py


# ----------------------------------------------------------------------------
# The README's shape
# ----------------------------------------------------------------------------

def test_readme_is_a_short_guide():
    lines = README.read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("path", [README, *DOC_PAGES], ids=lambda p: p.name)
def test_no_issue_numbers_or_machine_paths(path):
    text = path.read_text()
    assert not re.search(r"issue \d", text, re.IGNORECASE), "refer to the docs page, not an issue"
    for prefix in ("/work/", "/root/"):
        assert prefix not in text, f"{path.name} names a machine path ({prefix}...)"


def test_every_part_has_a_documented_command():
    scripts = {script for script, _ in documented_commands(README)}
    assert scripts == SCRIPTS, f"the README shows no command for {SCRIPTS - scripts}"
    assert {script for script, _ in README_QUICK} == SCRIPTS - {"reproduce.py"}


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("path", [README, *DOC_PAGES], ids=lambda p: p.name)
def test_links_point_at_existing_files_and_headings(path):
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{path.name} links to {target}: no such heading"


# ----------------------------------------------------------------------------
# Every documented command parses
# ----------------------------------------------------------------------------

def test_commands_were_found():
    assert len(documented_commands(README)) >= 10
    assert len(ALL_COMMANDS) > len(documented_commands(README))


@pytest.mark.parametrize("path, script, argv", ALL_COMMANDS,
                         ids=[label(*c) for c in ALL_COMMANDS])
def test_documented_command_parses(path, script, argv):
    module = importlib.import_module(Path(script).stem)
    try:
        script_settings(module, argv)
    except SystemExit as stop:
        pytest.fail(f"{label(path, script, argv)} is refused by its parser (exit {stop.code})")


# ----------------------------------------------------------------------------
# The README's --quick commands run, on stand-in data, outside the repository
# ----------------------------------------------------------------------------

def fingerprint() -> dict:
    paths = sorted((REPO_ROOT / "figures").glob("*")) + [REPO_ROOT / "RESULTS.md"]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Every README --quick command of a script, run at once in its own process:
    {command index: (completed process, run folder)}."""
    tmp = tmp_path_factory.mktemp("readme_quick")
    mnist = write_mnist(tmp / "mnist")
    prices = write_prices_csv(tmp / "prices.csv")
    env = clean_env(LSTM_AE_PROCS="1", LSTM_AE_MNIST_DIR=str(mnist), LSTM_AE_SP500_CSV=str(prices))
    before = fingerprint()
    started = {}
    for k, (script, argv) in enumerate(README_QUICK):
        run_dir = tmp / f"run{k}"
        argv = [str(prices) if a == PRICES_PLACEHOLDER else a for a in argv]
        if script == "lstm_ae_mnist.py" and "--no-download" not in argv:
            argv.append("--no-download")
        argv += ["--run-dir", str(run_dir), "--figures-dir", str(run_dir / "figures"),
                 "--threads", "1", "--quiet"]
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / script), *argv], cwd=tmp,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        started[k] = (process, run_dir)
    done = {}
    for k, (process, run_dir) in started.items():
        output, _ = process.communicate(timeout=300)
        done[k] = (process.returncode, output, run_dir)
    assert fingerprint() == before, "a README --quick command wrote into figures/ or RESULTS.md"
    return done


@pytest.mark.parametrize("k", range(len(README_QUICK)),
                         ids=[label(README, *c) for c in README_QUICK])
def test_readme_quick_command_runs(quick_runs, k):
    returncode, output, run_dir = quick_runs[k]
    assert returncode == 0, output[-3000:]
    assert (run_dir / "results.json").is_file()


def test_readme_python_example_runs(quick_runs):
    """The README's Python block, on the checkpoint of its row-by-row MNIST quick run."""
    row = [k for k, (script, argv) in enumerate(README_QUICK)
           if script == "lstm_ae_mnist.py" and "pixel" not in argv]
    assert row, "the README has no row-by-row MNIST --quick command"
    returncode, output, run_dir = quick_runs[row[0]]
    assert returncode == 0, output[-3000:]
    blocks = fenced_blocks(README, ("python",))
    assert len(blocks) == 1
    code = blocks[0].replace("runs/mnist_row/final.pt", str(run_dir / "final.pt"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["z"].shape) == (len(namespace["x"]), namespace["model"].config.hidden_size)
