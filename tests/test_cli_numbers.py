"""Every numeric option of ``fastmarl train`` (each algorithm's parser), ``eval`` and ``render``
rejects an out-of-range value before anything is written, in one line that names the option by
its flag (read from the parser, as the CLI's messages do), not by the Python field."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from fastmarl.cli.train import EvalArgs, RenderArgs, eval_main, flags, render_main, train_main
from fastmarl.config import QConfig, TrainConfig

# options whose range is the whole line: an out-of-range value for them is only NaN/inf
ANY_FINITE = {"ppo.log_std_init"}  # a Gaussian's initial log standard deviation, any real number


def _numeric_fields(cls: type, prefix: str = "") -> dict[str, type]:
    """dotted field -> int or float, for the numeric fields of config ``cls`` (nested included)."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        t = typing.get_type_hints(cls, include_extras=False)[f.name]
        if dataclasses.is_dataclass(t):
            out.update(_numeric_fields(t, f"{prefix}{f.name}."))
            continue
        args = {a for a in typing.get_args(t) if a is not type(None)} or {t}
        if args <= {int} or args <= {float}:
            out[prefix + f.name] = args.pop()
    return out


def _cases():
    for cls, algo, base in [(TrainConfig, "mappo", ["--num-envs", "2", "--num-steps", "5", "--total-steps", "100"]),
                            (QConfig, "qmix", ["--num-envs", "2", "--total-steps", "100"])]:
        names = flags(cls)
        for field, kind in _numeric_fields(cls).items():
            bad = ["nan", "inf"] if field in ANY_FINITE else (["-1", "nan"] if kind is float else ["-1"])
            for value in bad:
                yield pytest.param(algo, base, field, names[field], value, id=f"{algo}-{names[field]}={value}")


@pytest.mark.parametrize("algo,base,field,flag,value", list(_cases()))
def test_train_rejects_out_of_range_numbers_by_flag(tmp_path, capsys, algo, base, field, flag, value):
    rc = train_main(["--algo", algo, "--runs-dir", str(tmp_path), "--no-progress", *base, flag, value])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("fastmarl train: error: ") and len(err.splitlines()) == 1, err
    assert flag in err, err
    assert field.rsplit(".", 1)[-1] not in err.replace(flag, ""), err  # the Python name is not what the user typed
    assert not any(tmp_path.iterdir()), "nothing is written for a rejected setting"


def test_the_flag_map_comes_from_the_parser():
    names = flags(TrainConfig)
    assert names["ppo.num_steps"] == "--num-steps" and names["num_envs"] == "--num-envs"
    assert names["gif"] == "--gif" and flags(QConfig)["epsilon_anneal_steps"] == "--epsilon-anneal-steps"
    assert set(_numeric_fields(TrainConfig)) <= set(names) and set(_numeric_fields(QConfig)) <= set(flags(QConfig))


@pytest.mark.parametrize("main,cls,argv,flag", [
    (eval_main, EvalArgs, ["--episodes", "0"], "--episodes"),
    (eval_main, EvalArgs, ["--seed", "-3"], "--seed"),
    (render_main, RenderArgs, ["--seed", "-3"], "--seed"),
])
def test_eval_and_render_reject_out_of_range_numbers_by_flag(tmp_path, capsys, main, cls, argv, flag):
    assert main([str(tmp_path / "no_such_run"), *argv]) == 2  # checked before the run is even opened
    err = capsys.readouterr().err.strip()
    assert err == f"fastmarl {main.__name__[:-5]}: error: {flag} must be an integer >= " \
                  f"{1 if flag == '--episodes' else 0}, got {argv[1]}"


def test_train_names_a_missing_device_by_its_flag(tmp_path, capsys):
    import torch

    device = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    assert train_main(["--runs-dir", str(tmp_path), "--no-progress", "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fastmarl train: error: --device '{device}' is not available: ") and \
        err.endswith("; available: " + ", ".join(["cpu", *[f"cuda:{i}" for i in range(torch.cuda.device_count())],
                                                  *(["mps"] if torch.backends.mps.is_available() else [])])), err


@pytest.mark.parametrize("flag,value,low", [("--pool-size", "0", 1), ("--matrix-max-snapshots", "1", 2),
                                            ("--num-envs", "0", 1), ("--threads", "0", 1)])
def test_selfplay_names_the_flag(tmp_path, capsys, flag, value, low):
    from fastmarl.cli.selfplay import main

    assert main(["--env", "simple_tag_v3", "--runs-dir", str(tmp_path), flag, value]) == 2
    assert capsys.readouterr().err.strip() == \
        f"fastmarl selfplay: error: {flag} must be an integer >= {low}, got {value}"
