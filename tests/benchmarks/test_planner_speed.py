"""benchmarks/planner_speed.py on the shipped wall model at a tiny size: the table's columns and one-line errors."""
import pytest

from benchmarks import planner_speed


def test_table_has_a_row_per_cell_and_every_timing_column(capsys):
    planner_speed.main(["horizons=2", "batches=1,2", "repeats=1", "calls=1", "planners=grasp,cem"])
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| H | B |"))
    for column in ("grasp ms/iter", "cem ms/iter", "predict fwd+bwd B*H rows ms", "grasp s/call", "cem s/call",
                   "grasp s/first call", "cem s/first call"):
        assert f" {column} |" in header
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| 2 |")]
    assert [row[1].strip() for row in rows] == ["1", "2"]
    assert all(len(row) == header.count("|") - 1 and all(float(v) > 0 for v in row[2:]) for row in rows)


def test_cpu_default_times_every_column_but_the_eager_grasp_one(capsys):
    """On CPU `cuda_graphs` does nothing, so `grasp (eager)` would time grasp twice; device=cuda keeps it."""
    planner_speed.main(["horizons=2", "batches=1", "repeats=1", "calls=0"])
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| H | B |"))
    timed = [cell.strip()[:-len(" ms/iter")] for cell in header.split("|") if cell.strip().endswith(" ms/iter")]
    assert timed == [name for name in planner_speed.COLUMNS if name != "grasp (eager)"]


@pytest.mark.parametrize("argv, message", [(["planners=grasp,nope"], "unknown planner column(s) ['nope']"),
                                          (["colour=red"], "bad argument 'colour=red'")])
def test_bad_arguments_are_one_line_errors(argv, message):
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        planner_speed.main(argv)
