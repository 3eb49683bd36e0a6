"""The course's conventions: notebooks stripped and in sync, settings cells, README, install files."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from ppo_edu import notebook
from ppo_edu.course import GITHUB_REPO, LESSONS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_notebooks  # noqa: E402

SOLUTIONS = build_notebooks.solution_notebooks()


def cells(path, kind=None):
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if kind is None or c["cell_type"] == kind]


def text(cell):
    return "".join(cell["source"])


def test_exercise_notebooks_readme_and_stripping_are_up_to_date(capsys):
    assert build_notebooks.main(["--check"]) == 0, capsys.readouterr().out


def test_every_lesson_of_the_course_map_has_its_notebook():
    assert [p.name for p in SOLUTIONS] == [lesson.notebook for lesson in LESSONS]


@pytest.mark.parametrize("path", SOLUTIONS + sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(path):
    for cell in cells(path, "code"):
        assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_notebook_follows_the_lesson_template(path):
    code = [text(c) for c in cells(path, "code")]
    markdown = "\n".join(text(c) for c in cells(path, "markdown"))
    first = code[0]
    assert 'if "google.colab" in sys.modules:' in first and f"github.com/{GITHUB_REPO}@" in first
    assert "pick_device()" in first and "print(" in first
    assert any("settings_for(" in c and '"fast"' in c and '"full"' in c for c in code[:3]), "settings cell near the top"
    for heading in ("Learning goals", "Prerequisites", "Time", "What to discuss"):
        assert heading in markdown, f"{path.name} lacks a '{heading}' section"
    assert any(re.search(r"^\s*assert ", c, re.M) for c in code), "a notebook checks its claims"
    assert sum(build_notebooks.BEGIN in c for c in code) >= 1, "at least one exercise"
    assert any(re.search(r"= check_\w+\(", c) for c in code), "exercises are checked"
    assert "$$" in markdown, "the math is written out"


def test_exercise_stubs_replace_solution_blocks_at_their_indentation():
    lines = ["def f(x):", "    # BEGIN SOLUTION", "    return x + 1", "    # END SOLUTION", "print(f)"]
    out = build_notebooks.stub_lines(lines, "test")
    assert out[0] == "def f(x):" and out[-1] == "print(f)"
    assert "    raise NotImplementedError" in "\n".join(out) and "return x + 1" not in "\n".join(out)


def test_unbalanced_solution_markers_are_an_error():
    with pytest.raises(ValueError, match="without"):
        build_notebooks.stub_lines(["# BEGIN SOLUTION", "x = 1"], "nb cell 3")


@pytest.mark.parametrize("marker", ["#BEGIN SOLUTION", "# begin solution", "# BEGIN_SOLUTION", "  #  END SOLUTION"])
def test_a_mistyped_solution_marker_is_an_error_not_a_leak(marker):
    # "#BEGIN SOLUTION" ... "#END SOLUTION" was copied into the exercise, solution and all
    with pytest.raises(ValueError, match="looks like a solution marker"):
        build_notebooks.stub_lines(["def f(x):", f"    {marker}", "    return x + 1"], "nb cell 3")


def test_a_first_cell_without_its_install_line_is_an_error():
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Lesson"]},
                    {"cell_type": "code", "source": ["!pip install ppo-edu\n", "import torch"]}]}
    with pytest.raises(ValueError, match="09_x.ipynb: its first code cell has no Colab install line"):
        build_notebooks.set_install_line(nb, "09_x.ipynb")


def test_a_readme_without_course_map_markers_is_an_error(monkeypatch, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# ppo-edu\n\nno map here\n")
    monkeypatch.setattr(build_notebooks, "README", readme)
    with pytest.raises(ValueError, match="lost its course-map markers"):
        build_notebooks.planned_files()


def test_readme_course_map_has_a_colab_badge_per_lesson():
    readme = (ROOT / "README.md").read_text()
    for lesson in LESSONS:
        assert lesson.colab_url in readme and f"({lesson.path})" in readme
        assert lesson.exercise_colab_url in readme and f"({lesson.exercise_path})" in readme
        assert lesson.exercise_colab_url.endswith(f"/notebooks/exercises/{lesson.notebook}")
    assert lesson.colab_url.startswith(f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)


def test_environment_yml_lists_the_package_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata allows 3.10

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in env
    torch_deps = [d for d in deps if re.match(r"torch\b", d)]
    assert torch_deps and not any("==" in d for d in torch_deps), "torch is never pinned in the metadata"
    for dep in deps:
        if dep not in torch_deps:
            assert dep in env, f"environment.yml lacks {dep}"
    # torch: the version make setup and CI install, so conda users get the numbers the lessons quote
    pin = re.search(r"torch==([0-9.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert re.search(rf"^\s*- torch=={re.escape(pin)}$", env, re.MULTILINE), f"environment.yml should pin torch=={pin}"


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PPO_EDU_PROFILE", "fast")
    assert notebook.choose_profile() == "fast"
    monkeypatch.setenv("PPO_EDU_PROFILE", "turbo")
    with pytest.raises(ValueError, match="'turbo' is not a profile"):
        notebook.choose_profile()


def test_the_profile_variable_ignores_case_and_surrounding_spaces(monkeypatch):
    # "FAST" or "fast\n" (as a CI file or a shell may write it) names the fast profile
    for value in ("FAST", " Fast\n", "full "):
        monkeypatch.setenv("PPO_EDU_PROFILE", value)
        assert notebook.choose_profile() == value.strip().lower()


def test_settings_for_prints_what_it_uses(monkeypatch, capsys):
    monkeypatch.setenv("PPO_EDU_PROFILE", "fast")
    settings = notebook.settings_for({"full": {"steps": 100}, "fast": {"steps": 10}})
    assert settings == {"steps": 10}
    assert "profile: fast" in capsys.readouterr().out


def test_a_settings_cell_without_the_requested_profile_says_which_it_has(monkeypatch):
    # CI asks for "fast": a cell with only "full" is named, not a bare KeyError('fast')
    monkeypatch.setenv("PPO_EDU_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"profile 'fast' missing from the settings cell: \['full'\]"):
        notebook.settings_for({"full": {"steps": 100}})


def test_a_seed_from_the_environment_replaces_the_settings_seed(monkeypatch, capsys):
    profiles = {"full": {"seed": 0, "steps": 100}, "fast": {"seed": 0, "steps": 10}}
    monkeypatch.setenv("PPO_EDU_PROFILE", "fast")
    monkeypatch.delenv("PPO_EDU_SEED", raising=False)
    assert notebook.settings_for(profiles)["seed"] == 0
    assert "from PPO_EDU_SEED" not in capsys.readouterr().out
    monkeypatch.setenv("PPO_EDU_SEED", "7")
    assert notebook.settings_for(profiles) == {"seed": 7, "steps": 10}
    assert "seed = 7  (from PPO_EDU_SEED; the lesson's text quotes seed 0's run)" in capsys.readouterr().out
    assert profiles["fast"]["seed"] == 0  # the cell's own dict is left alone
    for bad in ("-1", "1.5", "seven", "", "²"):  # "²".isdigit() is True
        monkeypatch.setenv("PPO_EDU_SEED", bad)
        with pytest.raises(ValueError, match=f"PPO_EDU_SEED={bad!r} is not a seed"):
            notebook.settings_for(profiles)
    monkeypatch.setenv("PPO_EDU_SEED", "3")
    with pytest.raises(ValueError, match="PPO_EDU_SEED is set, but the settings cell has no seed"):
        notebook.settings_for({"full": {"steps": 1}, "fast": {"steps": 1}})


def test_a_seed_from_the_environment_must_be_written_in_ascii_digits(monkeypatch):
    # "٣" (Arabic-Indic three) and "３" (full-width) are decimal to str.isdecimal, and int() reads them
    profiles = {"full": {"seed": 0}, "fast": {"seed": 0}}
    monkeypatch.setenv("PPO_EDU_PROFILE", "fast")
    for bad in ("\u0663", "\uff13"):
        monkeypatch.setenv("PPO_EDU_SEED", bad)
        with pytest.raises(ValueError, match="is not a seed"):
            notebook.settings_for(profiles)
    monkeypatch.setenv("PPO_EDU_SEED", " 3 ")
    assert notebook.settings_for(profiles)["seed"] == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_requesting_a_missing_gpu_is_an_error():
    for requested in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            notebook.pick_device(requested)
    assert notebook.pick_device() == torch.device("cpu")


def test_pick_device_prefers_an_available_cuda_gpu(monkeypatch):
    # the GPU is faked: with one there, the default is CUDA, not MPS or the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert notebook.pick_device() == torch.device("cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Apple MPS")
def test_requesting_missing_mps_with_an_index_is_an_error():
    # "mps:0" used to pass: only the exact string "mps" was checked
    for requested in ("mps", "mps:0"):
        with pytest.raises(RuntimeError, match="MPS is not available"):
            notebook.pick_device(requested)


def test_every_image_the_readme_shows_is_in_assets_and_made_by_make_figures(tmp_path):
    from ppo_edu import figures

    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())
    shown = [path for path in images if not path.startswith("https://")]  # the Colab badges
    assert shown, "the README shows at least the L^CLIP figure"
    # --quick: the same code as make figures, on a few steps of each lesson's run
    assert figures.main(["--out", str(tmp_path), "--quick"]) == 0
    for path in shown:
        assert path.startswith("assets/") and (ROOT / path).is_file(), path
        assert (tmp_path / Path(path).name).is_file(), f"{path} is not regenerated by make figures"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.png" for name in figures.FIGURES)
    assert sorted((ROOT / "assets").iterdir()) == sorted(ROOT / "assets" / f"{n}.png" for n in figures.FIGURES)


def settings_cell(path) -> dict:
    """The ``settings_for({...})`` profiles of a lesson's settings cell, as {profile: settings}."""
    import ast

    for cell in cells(path, "code"):
        source = text(cell)
        if "SETTINGS = settings_for(" not in source:
            continue
        call = next(node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "settings_for")
        profiles = {}
        for key, value in zip(call.args[0].keys, call.args[0].values):
            assert isinstance(value, ast.Call) and value.func.id == "dict", ast.dump(value)
            profiles[ast.literal_eval(key)] = {kw.arg: ast.literal_eval(kw.value) for kw in value.keywords}
        return profiles
    raise AssertionError(f"{path.name} has no settings cell")


def test_the_readme_figures_use_the_lessons_full_settings():
    """make figures reruns lessons 2, 4 and 6 with its own copy of their settings: a lesson whose
    full settings change must change them there too (or the README shows another run)."""
    from ppo_edu import figures

    notebooks = ROOT / "notebooks"
    lesson2 = settings_cell(notebooks / "02_clipped_objective.ipynb")["full"]
    assert figures.LESSON2 == {k: lesson2[k] for k in figures.LESSON2}
    lesson6 = settings_cell(notebooks / "06_rlhf_ppo.ipynb")["full"]
    assert figures.LESSON6 == {k: lesson6[k] for k in figures.LESSON6}
    path = notebooks / "04_ppo_cartpole.ipynb"
    assert settings_cell(path)["full"]["seed"] == figures.LESSON4["seed"]
    code = "\n".join(text(c) for c in cells(path, "code"))
    assert 'config = PPOConfig(seed=SETTINGS["seed"])' in code  # the defaults otherwise
    assert f"tracker = EvalTracker(every={figures.LESSON4['eval_every']})" in code


def test_the_course_map_names_the_repository_it_points_at(monkeypatch):
    """The sentence under the map is generated too: setting GITHUB_REPO must not leave it saying
    'a placeholder'."""
    monkeypatch.setattr(build_notebooks, "GITHUB_REPO", "ORG/REPO")
    assert "`github.com/ORG/REPO`, a placeholder" in build_notebooks.course_map()
    monkeypatch.setattr(build_notebooks, "GITHUB_REPO", "someone/ppo-edu")
    text = build_notebooks.course_map()
    assert "`github.com/someone/ppo-edu`, branch `main`" in text and "placeholder" not in text


def test_expect_asserts_where_measured_and_prints_elsewhere(capsys):
    assert notebook.expect(1 < 2, "never shown") is True
    with pytest.raises(AssertionError, match="the score did not rise"):
        notebook.expect(False, "the score did not rise")
    assert notebook.expect(False, "the score did not rise", measured=False) is False
    out = capsys.readouterr().out
    assert "NOT AS EXPECTED: the score did not rise" in out and "tiny offline models on a CPU only" in out
    with pytest.raises(TypeError, match="measured must be True or False"):
        notebook.expect(False, "x", measured="offline")  # a truthy string would have asserted by accident


def test_expect_takes_numpy_and_torch_truth_values():
    """Lessons check numpy and torch comparisons (mean > 475): any true value holds, not just True."""
    import numpy as np

    for held in (np.bool_(True), np.float64(500.0) > 475, torch.tensor(True), torch.tensor([1.0]).mean() > 0.5):
        assert notebook.expect(held, "never shown") is True
    with pytest.raises(AssertionError, match="the mean stayed low"):
        notebook.expect(np.bool_(False), "the mean stayed low")


def test_lesson_6_checks_trained_models_with_expect_and_asserts_offline():
    source = "\n".join(text(c) for c in cells(ROOT / "notebooks" / "06_rlhf_ppo.ipynb", "code"))
    # so the offline run on a CPU, and CI, assert every one; a GPU's other random draws do not
    assert 'MEASURED = SETUP == "offline" and device.type == "cpu"' in source
    calls = source.count("expect(")
    assert calls >= 10 and source.count("measured=MEASURED)") == calls


def test_lesson_5_asserts_its_trained_model_checks_with_the_tiny_model():
    source = "\n".join(text(c) for c in cells(ROOT / "notebooks" / "05_sft_reward_model.ipynb", "code"))
    calls = source.count("expect(")
    assert calls == 5 and source.count("measured=MEASURED)") == calls
    assert 'MEASURED = LM == "tiny" and device.type == "cpu"' in source


@pytest.mark.parametrize("name", ["05_sft_reward_model.ipynb", "06_rlhf_ppo.ipynb"])
def test_lessons_5_and_6_run_the_tiny_models_on_the_cpu_where_there_is_a_gpu(name, monkeypatch, capsys):
    """Their numbers and thresholds were measured on a CPU: the settings cell moves the tiny
    models there from any accelerator pick_device finds (here a stand-in, the meta device), says
    so, and keeps the checks on trained models as asserts."""
    from IPython.core.inputtransformer2 import TransformerManager

    monkeypatch.setattr(notebook, "pick_device", lambda requested=None: torch.device("meta"))
    code = [text(c) for c in cells(ROOT / "notebooks" / name, "code")]
    upto = next(i for i, src in enumerate(code) if "SETTINGS = settings_for(" in src)
    namespace, threads = {}, torch.get_num_threads()
    try:
        for source in code[:upto + 1]:  # the setup cell and the settings cell
            exec(TransformerManager().transform_cell(source), namespace)
    finally:
        torch.set_num_threads(threads)  # the settings cell sets one thread for the tiny models
    out = capsys.readouterr().out
    assert "device: meta" in out  # the setup cell found the accelerator ...
    assert "device: cpu for the tiny models, not meta" in out  # ... and the settings cell left it
    assert namespace["device"] == torch.device("cpu") and namespace["MEASURED"] is True


def test_free_text_is_tokenized_only_through_text_ids():
    # ppo_edu.lm.reward.text_ids reads "<|pad|>" typed in a text as characters; a direct
    # tokenizer(..., add_special_tokens=False) call would turn it into the pad id again.
    direct = [f"{path.relative_to(ROOT)}:{n}"
              for folder in ("ppo_edu", "benchmarks", "tools")
              for path in sorted((ROOT / folder).rglob("*.py"))
              for n, line in enumerate(path.read_text().splitlines(), 1)
              if "add_special_tokens=False" in line and "split_special_tokens=True" not in line]
    assert direct == []


def test_the_code_and_notebooks_pass_the_projects_lint_rules():
    """`ruff check .` with pyproject's rules (pyflakes and the syntax/statement checks): an
    unused import or undefined name in a lesson, a test or a script fails here, not in review."""
    import subprocess

    pytest.importorskip("ruff", reason="ruff comes with the dev extra (make setup installs it)")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def _discussion_questions(path):
    """The numbered questions of a lesson's "What to discuss" section, as plain text."""
    section = next(text(c) for c in cells(path, "markdown") if "What to discuss" in text(c))
    section = section[section.index("What to discuss"):]
    return [q.strip() for q in re.findall(r"^\d+\.\s+(.*)$", section, re.M)]


def _normalise(s):
    return re.sub(r"\s+", " ", s.replace("…", "").replace("*", "")).strip()


def test_facilitator_notes_cover_every_discussion_question_in_order():
    """notebooks/FACILITATORS.md has one note per question, headed by the question's opening
    words: a question added, removed or reworded in a lesson without its note fails here."""
    notes = (ROOT / "notebooks" / "FACILITATORS.md").read_text()
    by_lesson = dict(re.findall(r"^## Lesson (\d): .*?\n(.*?)(?=^## Lesson |\Z)", notes, re.M | re.S))
    assert sorted(by_lesson) == [str(n) for n in range(1, len(SOLUTIONS) + 1)]
    for number, path in enumerate(SOLUTIONS, start=1):
        questions = _discussion_questions(path)
        heads = re.findall(r"^\*\*Q(\d+)\.\*\* (.*)$", by_lesson[str(number)], re.M)
        assert [int(n) for n, _ in heads] == list(range(1, len(questions) + 1)), path.name
        for (n, head), question in zip(heads, questions):
            opening = _normalise(head)
            assert len(opening) >= 20 and _normalise(question).startswith(opening), (
                f"{path.name} question {n}: the note's heading {head!r} is not how the question "
                f"starts: {question[:80]!r}")


def test_exercises_are_numbered_by_lesson_with_a_difficulty_and_importance_line():
    """Every lesson heads its exercises alike ("### Exercise N.k — title", then the difficulty
    and importance line STYLE.md takes from ARENA), numbered 1, 2, ... within lesson N."""
    heading = re.compile(r"^### Exercise (\d+)\.(\d+) — \S.*\n\*Difficulty: [★☆]{3} · Importance: [★☆]{3}\*$",
                         re.M)
    for number, path in enumerate(SOLUTIONS, start=1):
        markdown = "\n".join(text(c) for c in cells(path, "markdown"))
        assert markdown.count("### Exercise") == len(heading.findall(markdown)) > 0, path.name
        assert [(int(n), int(k)) for n, k in heading.findall(markdown)] == [
            (number, k) for k in range(1, len(heading.findall(markdown)) + 1)], path.name
