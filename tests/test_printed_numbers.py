"""tools/printed_numbers.py: what a notebook prints is recorded line by line, in the profile asked
for, and two records are compared with times and speeds counted apart from every other number."""

import json

import nbformat
import pytest


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("printed_numbers")


def record_of(notebooks, profile="full", torch="2.13.0"):
    return {"versions": {"torch": torch}, "profile": profile, "notebooks": notebooks}


def write_notebook(path, *sources):
    """A notebook of one code cell per source, written to ``path``."""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)


def test_a_cells_stdout_split_over_outputs_is_joined_and_its_result_kept(tool):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# not code"),
        nbformat.v4.new_code_cell("x", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="loss 0.5"),
            nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
            nbformat.v4.new_output("stream", name="stdout", text="1\nKL 2.0\n"),
            nbformat.v4.new_output("execute_result", data={"text/plain": "(1,\n 2)"}, execution_count=1),
        ]),
    ])
    assert tool.printed_lines(nb) == ["[cell 1] loss 0.51", "[cell 1] KL 2.0",
                                      "[cell 1 result] (1,", "[cell 1 result]  2)"]


def test_compare_counts_times_apart_and_reports_every_other_change(tool):
    old = record_of({"a.ipynb": ["[cell 1] 120 PPO steps in 199 s (20 responses/s)", "[cell 2] gain 1.048"],
                     "b.ipynb": ["[cell 0] same"]})
    same_but_time = record_of({"a.ipynb": ["[cell 1] 120 PPO steps in 204.5 s (19 responses/s)",
                                           "[cell 2] gain 1.048"], "b.ipynb": ["[cell 0] same"]}, torch="2.15.0")
    report, timing, differs = tool.compare(old, same_but_time)
    assert (timing, differs) == (1, False)
    assert "b.ipynb: 1 lines, all the same" in report

    changed = record_of({"a.ipynb": ["[cell 1] 121 PPO steps in 199 s (20 responses/s)", "[cell 2] gain 1.049"],
                         "b.ipynb": ["[cell 0] same"]})
    report, timing, differs = tool.compare(old, changed)
    assert (timing, differs) == (0, True)  # a step count is not a time
    assert "  - [cell 2] gain 1.048" in report and "  + [cell 2] gain 1.049" in report
    assert "  + [cell 1] 121 PPO steps in 199 s (20 responses/s)" in report


@pytest.mark.parametrize("new, message", [
    (record_of({"a.ipynb": []}), "b.ipynb: only in the old record"),
    (record_of({"a.ipynb": [], "b.ipynb": [], "c.ipynb": []}), "c.ipynb: only in the new record"),
    (record_of({"a.ipynb": [], "b.ipynb": []}, profile="fast"), "different profiles"),
])
def test_a_notebook_in_one_record_only_or_another_profile_is_a_difference(tool, new, message):
    report, _, differs = tool.compare(record_of({"a.ipynb": [], "b.ipynb": []}), new)
    assert differs and any(message in line for line in report)


def test_the_cli_exits_1_on_a_difference_and_refuses_what_is_not_a_record(tool, tmp_path, capsys):
    old, new, bad = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "bad.json"
    old.write_text(json.dumps(record_of({"a.ipynb": ["[cell 0] 1.0"]})))
    new.write_text(json.dumps(record_of({"a.ipynb": ["[cell 0] 1.5"]})))
    bad.write_text(json.dumps(record_of({"a.ipynb": "[cell 0] 1.0"})))
    assert tool.main(["--compare", str(old), str(old)]) == 0
    assert tool.main(["--compare", str(old), str(new)]) == 1
    assert "  + [cell 0] 1.5" in capsys.readouterr().out
    for argv, message in [(["--compare", str(old), str(bad)], "bad.json: not a record of this script"),
                          (["--compare", str(old), str(new), "--profile", "fast"], "--compare takes two records"),
                          (["--out", str(tmp_path / "r.json"), str(old)], "old.json is not a notebook file"),
                          (["--out", str(tmp_path), "--profile", "fast"], "is a folder")]:
        with pytest.raises(SystemExit):
            tool.main(argv)
        assert message in capsys.readouterr().err


def test_a_record_runs_the_notebook_in_the_profile_asked_for_and_restores_the_environment(
        tool, tmp_path, monkeypatch):
    monkeypatch.setenv("PPO_EDU_PROFILE", "full")
    monkeypatch.setenv("PPO_EDU_SEED", "7")
    path = tmp_path / "t.ipynb"
    write_notebook(path, "import os\nprint(os.environ['PPO_EDU_PROFILE'], os.environ.get('PPO_EDU_SEED'))",
                   "print('cwd', os.path.basename(os.getcwd()))\n6 * 7")
    data = tool.record([path], "fast", timeout=120)
    assert data["profile"] == "fast" and "torch" in data["versions"]
    # the kernel ran in the notebook's folder, with the profile set and no seed override
    assert data["notebooks"] == {"t.ipynb": ["[cell 0] fast None", f"[cell 1] cwd {tmp_path.name}",
                                             "[cell 1 result] 42"]}
    assert (tool.os.environ["PPO_EDU_PROFILE"], tool.os.environ["PPO_EDU_SEED"]) == ("full", "7")


def test_a_failing_cell_keeps_the_lines_before_it_and_the_next_notebook_still_runs(tool, tmp_path, capsys):
    failing, passing = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    write_notebook(failing, "print('return 159.3')",
                   "print('checking')\nassert 140 > 150, 'return 140 below 150'", "print('never printed')")
    write_notebook(passing, "print('ok')")
    out = tmp_path / "r.json"
    assert tool.main(["--out", str(out), "--profile", "fast", "--timeout", "120", str(failing), str(passing)]) == 1
    assert "a.ipynb failed: [cell 1 error] AssertionError: return 140 below 150" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["notebooks"] == {"a.ipynb": ["[cell 0] return 159.3", "[cell 1] checking",
                                             "[cell 1 error] AssertionError: return 140 below 150"],
                                 "b.ipynb": ["[cell 0] ok"]}
    assert data["failed"] == {"a.ipynb": "[cell 1 error] AssertionError: return 140 below 150"}

    # against a record where it passed, the failure is named and its lines are differences
    passed = tmp_path / "passed.json"
    passed.write_text(json.dumps(record_of({"a.ipynb": ["[cell 0] return 159.3", "[cell 1] checking",
                                                        "[cell 2] never printed"], "b.ipynb": ["[cell 0] ok"]}, profile="fast")))
    assert tool.main(["--compare", str(passed), str(out)]) == 1
    report = capsys.readouterr().out
    assert "a.ipynb failed in the new record: [cell 1 error] AssertionError: return 140 below 150" in report
    assert "  - [cell 2] never printed" in report


def test_a_cell_that_runs_past_the_timeout_is_named_as_the_failure(tool, tmp_path):
    path = tmp_path / "slow.ipynb"
    write_notebook(path, "print('first')", "import time\nprint('sleeping', flush=True)\ntime.sleep(30)")
    data = tool.record([path], "fast", timeout=3)
    lines = data["notebooks"]["slow.ipynb"]
    assert lines[0] == "[cell 0] first" and lines[-1].startswith("[cell 1 error] CellTimeoutError: ")
    assert data["failed"] == {"slow.ipynb": lines[-1]}


def test_the_record_is_written_after_each_notebook(tool, tmp_path):
    first, second, out = tmp_path / "a.ipynb", tmp_path / "b.ipynb", tmp_path / "r.json"
    write_notebook(first, "print('a ran')")
    # the second notebook reads the record while it runs: the first is already in it
    write_notebook(second, f"import json\nprint(json.load(open({str(out)!r}))['notebooks'])")
    data = tool.record([first, second], "fast", timeout=120, out=out)
    assert data["notebooks"]["b.ipynb"] == ["[cell 0] {'a.ipynb': ['[cell 0] a ran']}"]
    assert json.loads(out.read_text()) == data
