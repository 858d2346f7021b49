"""Project frame: CI runs the README's test command; environment.yml and pyproject list the same deps."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _versions(reqs: list[str]) -> dict[str, set[str]]:
    """Each requirement's name → its version specifiers (``gradio`` → ``{"<6,>=5"}``)."""
    out: dict[str, set[str]] = {}
    for req in reqs:
        parsed = Requirement(req)
        out.setdefault(_name(parsed.name), set()).add(str(parsed.specifier))
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, extra_reqs in project["optional-dependencies"].items():
        if extra != "all":
            reqs += extra_reqs
    wanted = {_name(r) for r in reqs}
    lines = (REPO / "environment.yml").read_text().splitlines()
    env_reqs = [
        line.strip()[2:].split("#")[0].strip()
        for line in lines
        if line.startswith("      - ") and not line.strip().startswith("- -e")
    ]
    listed = {_name(r) for r in env_reqs}
    assert wanted == listed, (
        f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    )
    assert _versions(reqs) == _versions(env_reqs)  # the same version pins, not only the same names


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in ci


CONFIGS = sorted((REPO / "configs").glob("*.json")) + sorted((REPO / "projects").glob("*/configs/*.json"))


def test_shipped_training_configs_load():
    """A typo in a shipped config (an unknown option, a bad value) fails here, not hours into a recipe."""
    from clip4idc.network.config import list_configs
    from clip4idc.training.train import TrainConfig

    assert len(CONFIGS) >= 8
    for path in CONFIGS:
        cfg = TrainConfig.from_file(path, [])
        assert cfg.model in list_configs(), f"{path.name}: unknown model {cfg.model!r}"
        assert cfg.out.startswith("runs/"), f"{path.name}: out {cfg.out!r} is outside runs/"


def test_training_scripts_chain_their_stages_in_order():
    """Each stage of a recipe script starts from a run that an earlier line of the same script wrote (a
    line is ``clip4idc train --config FILE`` or the demo recipe's ``train FILE [key=value ...]``)."""
    from clip4idc.training.train import TrainConfig

    scripts = sorted((REPO / "scripts").glob("train_*.sh")) + sorted((REPO / "projects").glob("*/train.sh"))
    assert len(scripts) >= 4
    line = re.compile(r"^[ \t]*(?:clip4idc train --config|train) (\S+\.json)((?:[ \\\n]+\w+=\S+)*)", re.M)
    for script in scripts:
        written: set[str] = set()
        stages = line.findall(script.read_text())
        assert stages, f"{script.name} trains nothing"
        for name, overrides in stages:
            assert (REPO / name).is_file(), f"{script.name}: {name} does not exist"
            fixed = [o for o in overrides.replace("\\", " ").split() if "$" not in o]  # not $EXPORT/...
            cfg = TrainConfig.from_file(REPO / name, fixed)
            init = next((o.split("=", 1)[1] for o in overrides.split() if o.startswith("init=")), cfg.init)
            if init and init.startswith("runs/"):
                assert init.removesuffix("/best") in written, (
                    f"{script.name}: {name} starts from {init}, which no earlier stage writes"
                )
            written.add(cfg.out)
        assert cfg.stage == "finetune", f"{script.name} ends without a caption decoder"
        if script.parent.name == "demo_model_v2":
            assert [TrainConfig.from_file(REPO / n, []).stage for n, _ in stages[:4]] == [
                "pretrain", "adapt", "adapt", "finetune",
            ], "the demo recipe is stand-in -> stage 1 (plain, then hard negatives) -> stage 2"  # fmt: skip
