"""This process's place in a group of processes, and where the values come from.

Every process runs the same command; they differ only in the process id.
Where the three values come from, per value, first match wins:

1. the flags `--num-processes`, `--process-id`, `--coordinator HOST:PORT`
   (`resolve_process_group`'s arguments);
2. `KERAS_BA_NUM_PROCESSES`, `KERAS_BA_PROCESS_ID`, `KERAS_BA_COORDINATOR`;
3. Keras' own `KERAS_DISTRIBUTION_NUM_PROCESSES`, `..._PROCESS_ID`,
   `..._JOB_ADDRESSES` (the first address is the coordinator);
4. a launcher: `torchrun` (`WORLD_SIZE`, `RANK`, `MASTER_ADDR`, `MASTER_PORT`,
   `LOCAL_RANK`; `--distribute ddp` only) or SLURM (`SLURM_NTASKS`,
   `SLURM_PROCID`, `SLURM_LOCALID`; the coordinator is the first host of
   `SLURM_STEP_NODELIST` on the port JAX derives from `SLURM_JOB_ID`).

A number of processes set by 1-3 needs the process id from 1-3 too, so that
a stray launcher variable never gives two processes the same id.

Example:
>>> group = resolve_process_group("data-parallel", num_processes=2, process_id=1,
...                               coordinator="10.0.0.1:1234", environ={})
>>> group.num_processes, group.process_id, group.is_chief
(2, 1, False)
"""

import dataclasses
import os
import re

import keras

from keras_ba.errors import WorkflowError
from keras_ba.training.distributed import modes

DEFAULT_TIMEOUT = 300.0
AUGMENT_SEED_STRIDE = 1000  # process i augments with seed + 1000 * i

ENV = {
    "num_processes": "KERAS_BA_NUM_PROCESSES",
    "process_id": "KERAS_BA_PROCESS_ID",
    "coordinator": "KERAS_BA_COORDINATOR",
    "timeout": "KERAS_BA_DISTRIBUTED_TIMEOUT",
}
_KERAS_ENV = {
    "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "process_id": "KERAS_DISTRIBUTION_PROCESS_ID",
    "coordinator": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
}
# Library parameters (the command line shows them as --num-processes, ...).
_FLAGS = {
    "num_processes": "`num_processes`",
    "process_id": "`process_id`",
    "coordinator": "`coordinator`",
    "timeout": "`distributed_timeout`",
}


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the processes that train one model.

    Attributes:
        num_processes: how many processes train together (1: no group).
        process_id: this process, in `[0, num_processes)`; 0 writes files.
        coordinator: `HOST:PORT` of process 0's rendezvous (JAX coordination
            service, or torch's TCP store).
        local_rank: this process's index on its machine (selects its GPU),
            when a launcher says so.
        timeout: seconds to wait for the group to form, and for a lost peer.
        source: where the values came from (for messages).
        launcher: `"torchrun"` when torchrun's rendezvous is the coordinator
            (then `torch.distributed` joins torchrun's own store, `env://`).

    Example:
    >>> ProcessGroup().is_multi, ProcessGroup().is_chief
    (False, True)
    """

    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None
    local_rank: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    source: str = "single process"
    launcher: str | None = None

    @property
    def is_multi(self):
        """More than one process."""
        return self.num_processes > 1

    @property
    def is_chief(self):
        """Process 0: the one that writes files."""
        return self.process_id == 0

    def describe(self):
        """One line for the training plan.

        Example:
        >>> ProcessGroup(2, 1, "h:1", source="flags").describe()
        'process 1 of 2 (coordinator h:1, from flags)'
        """
        if not self.is_multi:
            return "one process"
        return (
            f"process {self.process_id} of {self.num_processes} "
            f"(coordinator {self.coordinator}, from {self.source})"
        )


# === Where the values come from ===


def _launcher_values(mode, environ):
    """(name, values) of the launcher that started this process, if any."""
    if mode == "ddp" and "WORLD_SIZE" in environ and "RANK" in environ:
        coordinator = None
        if environ.get("MASTER_ADDR") and environ.get("MASTER_PORT"):
            coordinator = f"{environ['MASTER_ADDR']}:{environ['MASTER_PORT']}"
        return "torchrun (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT)", {
            "num_processes": environ["WORLD_SIZE"],
            "process_id": environ["RANK"],
            "coordinator": coordinator,
            "local_rank": environ.get("LOCAL_RANK"),
        }
    if "SLURM_NTASKS" in environ and "SLURM_PROCID" in environ:
        coordinator = None
        nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
        if nodes and environ.get("SLURM_JOB_ID", "").isdigit():
            port = int(environ["SLURM_JOB_ID"]) % 4096 + 65535 - 4095  # JAX's choice
            coordinator = f"{first_slurm_host(nodes)}:{port}"
        return "SLURM (SLURM_NTASKS, SLURM_PROCID)", {
            "num_processes": environ["SLURM_NTASKS"],
            "process_id": environ["SLURM_PROCID"],
            "coordinator": coordinator,
            "local_rank": environ.get("SLURM_LOCALID"),
        }
    return None, {}


def first_slurm_host(node_list):
    """The first host of a SLURM node list (`node[01-04,07],gpu2` -> `node01`).

    Example:
    >>> first_slurm_host("node[003-004,007],login1"), first_slurm_host("a1,b2")
    ('node003', 'a1')
    """
    head = re.match(r"([^,\[]*)(\[([^\],-]*))?", node_list.strip())
    return head.group(1) + (head.group(3) or "")


def _integer(value, name, minimum):
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < minimum:
        kind = "a positive integer" if minimum == 1 else "an integer >= 0"
        raise WorkflowError(f"{name} must be {kind}. Received: {value!r}.")
    return number


def _check_coordinator(address, name):
    host, _, port = str(address).strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise WorkflowError(
            f"{name} must be HOST:PORT (process 0's address and a free port, e.g. "
            f"10.0.0.1:1234). Received: {address!r}."
        )
    return f"{host}:{port}"


def resolve_process_group(
    mode,
    num_processes=None,
    process_id=None,
    coordinator=None,
    distributed_timeout=None,
    environ=None,
):
    """Resolves this process's `ProcessGroup` from flags and the environment.

    Cheap: it starts nothing, so bad values fail before any work. See the
    module docstring for the order of sources.

    Args:
        mode: the `--distribute` mode; only `data-parallel` and `ddp` run
            several processes.
        num_processes: how many processes train together, or None.
        process_id: this process's id, or None.
        coordinator: `HOST:PORT` of process 0, or None.
        distributed_timeout: seconds (default 300), or None.
        environ: the environment (default `os.environ`).

    Returns:
        A `ProcessGroup` (one process when nothing asks for more).

    Raises:
        WorkflowError: a value out of range, a missing process id or
            coordinator, several processes with a mode that has none.

    Example:
    >>> resolve_process_group("ddp", num_processes=2, process_id=2,
    ...                       coordinator="h:1", environ={})
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `process_id` must be in [0, 2) for 2 processes. Received: 2.
    """
    environ = os.environ if environ is None else environ
    flags = {"num_processes": num_processes, "process_id": process_id, "coordinator": coordinator}
    explicit = [("flags", _FLAGS, flags)]
    explicit.append(("KERAS_BA_* variables", ENV, {k: environ.get(v) for k, v in ENV.items()}))
    explicit.append(
        (
            "KERAS_DISTRIBUTION_* variables",
            _KERAS_ENV,
            {k: environ.get(v) for k, v in _KERAS_ENV.items()},
        )
    )
    values, names, sources = {}, {}, []
    for source, source_names, given in explicit:
        for key, value in given.items():
            if key in values or value is None or value == "":
                continue
            values[key], names[key] = value, source_names[key]
            if source not in sources:
                sources.append(source)
    timeout = _resolve_timeout(distributed_timeout, environ)
    if not modes.is_multi_process(mode):
        if (
            "num_processes" in values
            and _integer(values["num_processes"], names["num_processes"], 1) > 1
        ):
            raise WorkflowError(
                f"{names['num_processes']} asks for several processes, but "
                f"`distribute_mode={mode!r}` runs one: use `distribute_mode='data-parallel'` "
                "(JAX) or `distribute_mode='ddp'` (PyTorch)."
            )
        return ProcessGroup(timeout=timeout)
    launcher, launched = _launcher_values(mode, environ)
    if "num_processes" in values and "process_id" not in values:
        raise WorkflowError(
            f"{names['num_processes']} is set: give this process's id too "
            f"({_FLAGS['process_id']} or {ENV['process_id']})."
        )
    local_rank = launched.pop("local_rank", None)
    for key, value in launched.items():
        if key not in values and value is not None:
            values[key], names[key] = value, f"{key} from {launcher.split(' ')[0]}"
            if launcher not in sources:
                sources.append(launcher)
    if "num_processes" not in values:
        return ProcessGroup(timeout=timeout)
    count = _integer(values["num_processes"], names["num_processes"], 1)
    index = _integer(values.get("process_id", 0), names.get("process_id", _FLAGS["process_id"]), 0)
    if index >= count:
        raise WorkflowError(
            f"{names['process_id']} must be in [0, {count}) for {count} processes. "
            f"Received: {index}."
        )
    if count == 1:
        return ProcessGroup(timeout=timeout)
    if "coordinator" not in values:
        raise WorkflowError(
            f"{count} processes need process 0's address: pass {_FLAGS['coordinator']} "
            f"(HOST:PORT) or set {ENV['coordinator']}."
        )
    address = values["coordinator"].split(",")[0]
    address = _check_coordinator(address, names["coordinator"])
    if local_rank is not None:
        local_rank = _integer(local_rank, "LOCAL_RANK", 0)
    from_torchrun = names["coordinator"].endswith("from torchrun")
    return ProcessGroup(
        count,
        index,
        address,
        local_rank,
        timeout,
        ", ".join(sources),
        "torchrun" if from_torchrun else None,
    )


def _resolve_timeout(timeout, environ):
    name = _FLAGS["timeout"]
    if timeout is None and environ.get(ENV["timeout"]):
        timeout, name = environ[ENV["timeout"]], ENV["timeout"]
    if timeout is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(timeout)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise WorkflowError(f"{name} must be a positive number of seconds. Received: {timeout!r}.")
    return value


def check_mode(mode, group, backend=None, devices=None):
    """Refuses what the backend cannot run with several processes.

    Example:
    >>> check_mode("ddp", ProcessGroup(), backend="jax")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `distribute_mode='ddp'` needs KERAS_BACKEND=torch, but the backend is 'jax'. ...
    """
    modes.check_backend(mode, backend or keras.backend.backend())
    if group.is_multi and devices:
        raise WorkflowError(
            "`devices` splits the CPU of a single process; with several processes every "
            "process trains on its own devices (GPUs, or one CPU device each)."
        )


def check_batch(batch_size, group):
    """The global batch must split evenly over the processes (`modes.check_batch`).

    Example:
    >>> check_batch(6, ProcessGroup(4, 0, "h:1"))
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: `batch_size=6` (the global batch) does not split over 4 processes: use a multiple of 4.
    """
    modes.check_batch(batch_size, group.num_processes, "processes")
