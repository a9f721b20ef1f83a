import io

from aeframe.execution.progress import CellProgress
from aeframe.cells.record import CellConfig, CellRecord


def test_progress_line_shows_epoch_step_loss_and_budget_left():
    stream = io.StringIO()
    bar = CellProgress("[1/2] Baseline on shapes (seed 0)", stream)
    bar.update(epoch=2, step=40, loss=0.0123456, progress=0.5, left="33s")
    assert stream.getvalue() == (
        "[1/2] Baseline on shapes (seed 0) |############------------|  50% epoch 2 step 40 loss 0.01235 left 33s\n"
    )
    record = CellRecord("k", CellConfig(), "done", metrics={"mse": 0.0042}, stats={"epochs": 2.5, "train_seconds": 75})
    bar.finish(record)
    assert stream.getvalue().splitlines()[-1] == "[1/2] Baseline on shapes (seed 0): done 2.50 epochs in 1m 15s mse 0.004200"


def test_failed_cell_summary_is_the_first_error_line():
    stream = io.StringIO()
    CellProgress("t", stream).finish(CellRecord("k", CellConfig(), "failed", error="RuntimeError: boom\nTraceback..."))
    assert stream.getvalue() == "t: failed RuntimeError: boom\n"
