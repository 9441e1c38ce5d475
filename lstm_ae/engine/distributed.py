"""Process layout: where each process stands, the process group, the launcher
of --procs N, and the threads each process uses (which layout is fastest on the
CPU is measured in layout.py; precision is runtime.py's).

Data-parallel training runs on ``torch.distributed``: one process per CPU core
or GPU, DistributedDataParallel in ``training.fit``, gloo on the CPU and NCCL on
CUDA. A script finds its layout in one of two ways:

* started by ``torchrun`` (``--standalone``, or ``--nnodes``/``--rdzv-endpoint``
  across machines), it reads RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE
  from the environment torchrun sets;
* started as ``python lstm_ae_*.py --procs N`` (or ``auto``), it starts N local
  processes itself with ``torch.multiprocessing``'s spawn context, which
  set the same variables. A process that dies before its work is done makes
  the parent stop the others and print one line (``launch``).

Rank 0 alone prints, writes figures, CSVs, results and checkpoints; the others
have stdout sent to /dev/null. Collective operations time out after
``$LSTM_AE_DIST_TIMEOUT`` seconds (default 3600; a grid round waits for its
slowest point, so the limit must exceed one grid point's training).

How many processes: ``resolve_procs`` for a number or for GPUs; on the CPU
``--procs auto`` is measured (layout.py, chosen in cli/run_layout.py before
``run``), and where nothing was measured (--eval-only) it is one process.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing.connection
import os
import pickle
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tqdm import tqdm

from lstm_ae.errors import (LAUNCHER_VARIABLES, Interrupted, UserError,
                            signals_raise_interrupted)
from models import resolve_device

TIMEOUT_ENV = "LSTM_AE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 3600


# ----------------------------------------------------------------------------
# Where this process stands
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """This process's place among the training processes (torchrun's terms)."""
    world_size: int = 1          # processes in all, on every node
    rank: int = 0                # this process among them; 0 writes every output
    local_rank: int = 0          # this process among those on its node (its GPU index)
    local_world_size: int = 1    # processes on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_launcher() -> bool:
    """Whether torchrun (or this module's own launcher) started this process."""
    return all(name in os.environ for name in LAUNCHER_VARIABLES)


def under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.run) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def env_layout() -> Layout:
    """The layout torchrun describes in the environment; one process without it."""
    if not under_launcher():
        return Layout()
    env = os.environ
    world = int(env["WORLD_SIZE"])
    return Layout(world, int(env["RANK"]), int(env["LOCAL_RANK"]),
                  int(env.get("LOCAL_WORLD_SIZE", world)))


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_process(threads: Optional[int]) -> Optional[int]:
    """``--threads`` if given; else the node's cores shared out among its processes
    (one each on a 2-core machine with 2 processes); None (PyTorch's choice,
    every core) for a single process. Several threads per process on top of
    several processes would oversubscribe the cores."""
    if threads:
        return threads
    local = env_layout().local_world_size
    return max(1, cpu_cores() // local) if local > 1 else None


def timeout_seconds() -> float:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise UserError(f"${TIMEOUT_ENV} must be a number of seconds above 0, got {text!r}")
    return value


# ----------------------------------------------------------------------------
# The process group
# ----------------------------------------------------------------------------

def init_process_group(device: torch.device) -> Layout:
    """Join the process group torchrun or ``launch`` set up (gloo on the CPU, NCCL on
    CUDA, each GPU taken by its local rank); silence stdout on ranks other than 0.
    Nothing happens in a single process. Call after ``runtime.setup_runtime``."""
    layout = env_layout()
    if not layout.distributed:
        return layout
    if device.type == "mps":
        raise UserError("data-parallel training needs the CPU or CUDA; run one process on MPS "
                        "(--procs 1)")
    if not dist.is_initialized():
        if device.type == "cuda":
            if layout.local_rank >= torch.cuda.device_count():
                raise UserError(f"{layout.local_world_size} processes on this node but only "
                                f"{torch.cuda.device_count()} GPU(s); start at most one per GPU")
            torch.cuda.set_device(layout.local_rank)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    if not layout.is_main:
        sys.stdout = open(os.devnull, "w")
    return layout


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def prepare_to_leave() -> None:
    """Call first in a rank that will end with ``leave``: tqdm's default lock is a
    multiprocessing semaphore, which ``os._exit`` would leak; a thread lock does."""
    tqdm.set_lock(threading.RLock())


def leave(status: int) -> None:
    """End this rank now with ``status``: leave the process group, flush Python's
    streams, and ``os._exit`` without the interpreter's teardown.

    Why: on CPUs with native bf16, about one rank in eight aborted at interpreter
    exit after its work was done ("terminate called without an active exception":
    a C++ thread still joinable when static destructors run, exit status -6), and
    the launcher then stopped the other ranks. Every rank, of --procs or of
    torchrun, leaves this way.
    """
    shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


_local_depth = 0


@contextlib.contextmanager
def local():
    """Within this block the process trains on its own (a grid point), not data-parallel."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def data_parallel() -> bool:
    """Whether training and evaluation here are shared with the other ranks."""
    return _local_depth == 0 and dist.is_available() and dist.is_initialized() \
        and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0, or a single process: the one that prints and writes."""
    return rank() == 0


def share(n: int, parts: Optional[int] = None, part: Optional[int] = None) -> slice:
    """This rank's contiguous share of n items: sizes differ by at most one, the
    first ``n % parts`` ranks taking one more (numpy's array_split rule)."""
    parts = world_size() if parts is None else parts
    part = rank() if part is None else part
    base, extra = divmod(n, parts)
    start = part * base + min(part, extra)
    return slice(start, start + base + (1 if part < extra else 0))


def all_reduce_sums(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum each value over the ranks (one collective call; the keys must agree)."""
    if not data_parallel() or not sums:
        return sums
    names = sorted(sums)
    stacked = torch.stack([sums[k].detach().double().reshape(()) for k in names])
    dist.all_reduce(stacked)
    return {k: stacked[i] for i, k in enumerate(names)}


def all_gather_object(obj: Any) -> list:
    """obj from every rank, in rank order (pickled; small objects only)."""
    if not data_parallel():
        return [obj]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_from_main(make: Callable[[], Any]) -> Any:
    """``make()`` run on rank 0 and sent to every rank, so that all start from the
    same checkpoint or CSV even on machines that do not share a disk. A UserError
    raised by ``make`` is raised on every rank."""
    if not data_parallel():
        return make()
    payload = [None]
    if is_main():
        try:
            payload = [("ok", make())]
        except UserError as error:
            payload = [("error", str(error))]
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise UserError(value)
    return value


# ----------------------------------------------------------------------------
# How many processes: --procs auto|N
# ----------------------------------------------------------------------------

def resolve_procs(procs: str | int, device: torch.device) -> int:
    """The number of local processes for ``--procs``: a number as given (checked
    against the device); ``auto``: one per GPU on CUDA, one on MPS, and on the CPU
    one where no probe chose the layout (layout.choose_layout measures it for a
    training run). Raises UserError for more processes than the device allows."""
    if str(procs) != "auto":
        count = int(procs)
        if device.type == "mps" and count > 1:
            raise UserError("--procs above 1 needs the CPU or CUDA; MPS runs one process")
        if device.type == "cuda" and count > torch.cuda.device_count():
            raise UserError(f"--procs {count} but only {torch.cuda.device_count()} GPU(s) here; "
                            "use --procs auto (one per GPU) or fewer")
        return count
    if device.type == "cuda":
        return max(1, torch.cuda.device_count())
    return 1


# ----------------------------------------------------------------------------
# Starting N local processes (plain python with --procs N)
# ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(local_rank: int, nprocs: int, port: int, entry: Callable, args: tuple,
           folder: str) -> None:
    """One rank: run ``entry``, leave its outcome as a file in ``folder`` for the
    parent, and ``leave`` (without the interpreter's teardown, which aborted now
    and then; the parent then stopped rank 0 before it wrote the results). SIGINT
    is ignored here: on Ctrl-C in a terminal the whole process group gets it, and
    the parent stops the ranks itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_to_leave()
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs),
                      LOCAL_WORLD_SIZE=str(nprocs), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    status = 0
    try:
        result = entry(*args)
        Path(folder, f"done-{local_rank}").touch()      # past this rank's last collective
        if local_rank == 0:
            with open(Path(folder, "result.pkl.part"), "wb") as handle:
                pickle.dump(result, handle)
            os.replace(Path(folder, "result.pkl.part"), Path(folder, "result.pkl"))
    except UserError as error:
        Path(folder, f"error-{local_rank}").write_text(str(error))
        status = 2
    except BaseException as error:  # a crash: its last line for the parent's message
        Path(folder, f"crash-{local_rank}").write_text(_last_line(error))
        status = 1
    leave(status)


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__


def launch(entry: Callable, nprocs: int, *args) -> Any:
    """Run ``entry(*args)`` in ``nprocs`` new local processes, ranks 0..nprocs-1 of one
    process group on this machine (``torch.multiprocessing``'s spawn context);
    return rank 0's return value.

    ``entry`` must be a module-level function. A UserError in any process is
    raised here with its message. A process that crashes or is killed before its
    work is done stops the others and raises UserError naming the rank; one that
    dies after it (past its last collective) does not cost rank 0 its results.
    SIGINT or SIGTERM here stops every rank and raises Interrupted.
    """
    with tempfile.TemporaryDirectory(prefix="lstm-ae-procs-") as folder:
        spawn, port = mp.get_context("spawn"), _free_port()
        processes = [spawn.Process(target=_child, args=(rank_, nprocs, port, entry, args, folder),
                                   name=f"lstm-ae-rank-{rank_}") for rank_ in range(nprocs)]
        try:
            with signals_raise_interrupted():
                _start_ignoring_sigint(processes)
                failed = _wait(processes, Path(folder))
        except Interrupted:
            _stop(processes)
            raise
        if failed is not None:
            failed = _root_failure(processes, Path(folder), failed)
            _stop(processes)
            raise UserError(_failure_line(Path(folder), nprocs, *failed)) from None
        result = Path(folder, "result.pkl")
        if not result.exists():   # rank 0 exited 0 without writing it: a bug, not the user's
            raise UserError("training process rank 0 ended without a result")
        with open(result, "rb") as handle:
            return pickle.load(handle)


def _start_ignoring_sigint(processes: list) -> None:
    """Start the ranks with SIGINT ignored, which a new interpreter keeps: a Ctrl-C to
    the terminal's process group while a rank still imports torch is then no
    traceback there (the parent stops the ranks itself). SIGTERM still ends them."""
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, handler)


def _wait(processes: list, folder: Path) -> Optional[tuple[int, int]]:
    """Wait for every rank; (rank, exit code) of the first that failed before its
    work was done, or None when all finished."""
    while True:
        # One snapshot of the exit codes per pass: a rank that ends between the failure
        # check and the liveness check is seen on the next pass, never skipped.
        codes = [process.exitcode for process in processes]
        for rank_, code in enumerate(codes):
            finished = (Path(folder, "result.pkl").exists() if rank_ == 0
                        else Path(folder, f"done-{rank_}").exists())
            if code not in (None, 0) and not finished:
                return rank_, code
        alive = [p.sentinel for p, code in zip(processes, codes) if code is None]
        if not alive:
            return None
        multiprocessing.connection.wait(alive, timeout=1.0)


def _stop(processes: list, grace_s: float = 10.0) -> None:
    """SIGTERM to every rank still running, SIGKILL to any left after ``grace_s``."""
    for process in processes:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()


# How a rank fails when another rank died first: its connection to that rank broke.
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def _root_failure(processes: list, folder: Path, first: tuple[int, int],
                  settle_s: float = 1.0) -> tuple[int, int]:
    """(rank, exit code) of the rank that failed first in cause, not only in the order
    the parent saw them: a rank whose crash is a lost connection to a peer is passed
    over for one that failed on its own, given ``settle_s`` for the others to end."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and any(p.exitcode is None for p in processes):
        time.sleep(0.05)
    failed = [(r, p.exitcode) for r, p in enumerate(processes) if p.exitcode not in (None, 0)
              and not Path(folder, f"done-{r}").exists()]
    for rank_, code in failed:
        crash = Path(folder, f"crash-{rank_}")
        if not (crash.exists() and any(text in crash.read_text() for text in PEER_LOST)):
            return rank_, code
    return first


def _failure_line(folder: Path, nprocs: int, rank_: int, code: int) -> str:
    """A user error any rank reported, else what happened to the rank that failed."""
    for other in range(nprocs):
        message = Path(folder, f"error-{other}")
        if message.exists():
            return message.read_text()
    crash = Path(folder, f"crash-{rank_}")
    if crash.exists():
        how = f"failed ({crash.read_text()})"
    elif code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with status {code}"
    return f"training process rank {rank_} {how}; the other processes were stopped"


def run(body: Callable, args) -> Any:
    """``body(args)`` in the layout ``args.procs`` asks for: here when torchrun started
    this process or one process is asked for, else in ``args.procs`` new ones."""
    procs = getattr(args, "procs", "1")
    if under_launcher():
        layout = env_layout()
        if str(procs) not in ("auto", "1", str(layout.world_size)):
            raise UserError(f"--procs {procs} but the launcher started {layout.world_size} "
                            "process(es); leave --procs out under torchrun")
        return body(args)
    count = resolve_procs(procs, resolve_device(args.device))
    if count == 1:
        return body(args)
    return launch(body, count, args)
