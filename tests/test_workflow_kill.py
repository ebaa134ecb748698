"""Kill `keras-ba train` at any instant: each rerun resumes, and the run ends whole.

One tiny run (5 epochs of 2 steps) is SIGKILLed again and again: inside each
kind of file write through a test-side hook (`workflow_helpers.KILL_HOOK`,
loaded with `-c` before the command line; nothing of it is in the library):
the end-of-epoch backup, the checkpoint, the history (its rewrite at a
resume), the final model (after which the rerun restores the last epoch and
only saves); and from outside at random delays
after an epoch starts (during a step, the validation or a save). After every
kill the same command is run again; it must resume without a traceback,
and in the end `history.csv` holds every epoch exactly once, the learning
rate schedule ran on across the resumes, `model.keras` loads, and no
temporary file is left.

The logic under test is backend-independent (Python file handling around
`fit`; `test_workflow.py` also kills inside the backup write, in the TF pass),
so this runs in one pass: PyTorch, whose processes start fastest (no graph
tracing, no XLA compile).
"""

import os
import random
import signal

import keras
import pytest
from conftest import BACKEND
from workflow_helpers import TINY_MODEL, cli, cli_killed_after

from keras_ba.runs import folder as run_folder

pytestmark = pytest.mark.skipif(
    BACKEND != "torch", reason="backend-independent: runs once, in the PyTorch pass"
)

EPOCHS = 5
COMMAND = TINY_MODEL + [
    "--data",
    "digits",
    "--image-size",
    "16",
    "--limit",
    "32",
    "--batch-size",
    "16",
    "--steps-per-epoch",
    "2",
    "--epochs",
    str(EPOCHS),
    "--crop",
    "center",  # no keras-cv layer: faster process start
    "--no-flip",
    "--no-plot",
]

# (hook, what the hook names in its message); None: a kill from outside.
KILLS = [
    ("h5|backup|2", "backup/.tmp-"),  # epoch 2's backup, mid-write
    ("zip|last.keras|2", "last.keras.tmp-"),  # epoch 3's checkpoint
    ("open|history.csv|1", "history.csv.tmp-"),  # the history trimmed at the resume
    (None, None),
    (None, None),
    ("zip|model.keras|1", "model.keras.tmp-"),  # the final model (run.json not yet finished)
]


def test_killed_at_many_instants_the_run_resumes_and_ends_whole(tmp_path):
    out = tmp_path / "run"
    command = ["train", *COMMAND, "--output", str(out)]
    rng = random.Random(0)
    log = []
    for attempt, (hook, names) in enumerate(KILLS):
        if hook:
            result = cli(command, kill_at=hook)
            code, stdout, stderr = result.returncode, result.stdout, result.stderr
            assert code == -signal.SIGKILL, (hook, stdout[-2000:], stderr[-2000:])
            assert "KILL_HOOK: SIGKILL while writing" in stderr and names in stderr, stderr
        else:
            # From outside: 0-1.5 s after this process' first epoch starts, and at
            # the latest when its last epoch starts (so the run is never finished).
            delay = rng.uniform(0.0, 1.5)
            code, stdout, stderr, killed = cli_killed_after(
                command, "Epoch ", delay, last_marker=f"Epoch {EPOCHS}/{EPOCHS}"
            )
            assert killed and code == -signal.SIGKILL, (code, stdout[-2000:], stderr[-2000:])
        log.append((hook or "outside", stdout, stderr))
        assert "Traceback" not in stderr, (hook, stderr[-3000:])
        if attempt:  # every rerun resumed from a backup
            assert "Resuming after epoch" in stdout, (hook, stdout[-2000:])

    final = cli(command)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert "Traceback" not in final.stderr
    paths = run_folder.RunPaths(out)
    history = run_folder.read_history(paths.history_csv)
    assert history["epoch"] == [float(e) for e in range(EPOCHS)], (history, log)
    rates = history["learning_rate"]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False)), rates
    model = keras.saving.load_model(paths.model, compile=False)
    assert model.output_shape == (None, 10)
    assert run_folder.RunConfig.load(paths.config).status == "finished"
    assert not os.path.exists(paths.backup)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
