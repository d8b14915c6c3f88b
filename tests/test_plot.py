"""Plot helpers: valid PNGs, headless, no pyplot, no matplotlib in the core."""

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from ctrlprop import plot as cpl                                    # noqa: E402
from ctrlprop.plants import (CAR_X0, Car, Pendulum, PlanarArm,      # noqa: E402
                             TruckBackerUpper)

PNG = b"\x89PNG\r\n\x1a\n"


def _png(fig, path):
    """Save and check the PNG signature; returns the path."""
    out = cpl.save_figure(fig, path)
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 2000
    return out


def _run(code):
    """Run python code in a fresh headless interpreter; returns stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY",
                                                             "MPLBACKEND")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_core_never_imports_matplotlib():
    out = _run("import sys, pkgutil, importlib, ctrlprop\n"
               "for m in pkgutil.iter_modules(ctrlprop.__path__):\n"
               "    importlib.import_module('ctrlprop.' + m.name)\n"
               "print(sorted(m.name for m in pkgutil.iter_modules(ctrlprop.__path__)))\n"
               "print('matplotlib' in sys.modules)")
    names, loaded = out.strip().splitlines()
    assert "plants" in names and "plot" in names
    assert loaded == "False"


def test_headless_no_pyplot_and_user_backend_kept(tmp_path):
    # a user who picked a backend keeps it; the figures still come out as PNG, without pyplot
    out = _run("import matplotlib, sys, numpy as np\n"
               "matplotlib.use('svg')\n"
               "from ctrlprop import plot as cpl\n"
               "fig = cpl.plot_paths(np.random.default_rng(0).normal(size=(3, 20, 2)))\n"
               f"p = cpl.save_figure(fig, r'{tmp_path}/a/b/paths.png')\n"
               "print(open(p, 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n')\n"
               "print(matplotlib.get_backend())\n"
               "print('matplotlib.pyplot' in sys.modules)")
    assert out.split() == ["True", "svg", "False"]


def test_time_series(tmp_path):
    p = Pendulum()
    U = np.tile([[2.0], [-2.0]], (20, 1))
    S = p.rollout(p.hanging, U)
    fig = cpl.plot_time_series(S, U, plant=p, predicted=S + 0.05, title="pendulum")
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = fig.get_axes()
    assert [a.get_ylabel() for a in axes] == ["theta", "theta_dot", "torque"]
    assert axes[-1].get_xlabel() == "time"
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["actual", "predicted"]
    _png(fig, tmp_path / "ts.png")
    fig = cpl.plot_time_series(np.zeros((5, 3)))                     # states only, no plant
    assert [a.get_ylabel() for a in fig.get_axes()] == ["x0", "x1", "x2"]
    _png(fig, tmp_path / "ts2.png")
    with pytest.raises(ValueError, match="need 3 state labels"):
        cpl.plot_time_series(np.zeros((5, 3)), state_labels=["a"])
    with pytest.raises(ValueError, match="predicted must have 3 columns"):
        cpl.plot_time_series(np.zeros((5, 3)), predicted=np.zeros((5, 2)))


def test_paths_and_phase_portrait(tmp_path):
    rng = np.random.default_rng(0)
    walks = rng.normal(size=(15, 30, 3)).cumsum(1)
    fig = cpl.plot_paths(walks, target=(0, 0), title="walks")
    assert len(fig.axes[0].get_lines()) == 15 * 3 + 1          # path, start, end; target
    _png(fig, tmp_path / "paths.png")
    fig = cpl.plot_paths([walks[0], walks[1, :10]], labels=["a", "b"], xy=(1, 2),
                         start_marker=False)
    np.testing.assert_array_equal(fig.axes[0].get_lines()[1].get_xdata(), walks[1, :10, 1])
    _png(fig, tmp_path / "paths2.png")
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        cpl.plot_paths([walks[0], walks[1]], labels=["a"])
    with pytest.raises(ValueError, match="at least 3 columns"):
        cpl.plot_paths(walks[0, :, :2], xy=(0, 2))

    p = Pendulum()
    S = p.rollout([1.0, 0.0], np.zeros((120, 1)))
    field = lambda X: p.state_difference(X, p.step(X, np.zeros(1)))  # noqa: E731
    fig = cpl.plot_phase_portrait([S, S[:30]], labels=["free", "short"], vector_field=field)
    line = fig.axes[0].get_lines()[0]
    assert np.isnan(line.get_xdata()).any()                    # broken at the angle wraps
    assert np.nanmax(np.abs(line.get_xdata())) <= np.pi
    _png(fig, tmp_path / "phase.png")
    with pytest.raises(ValueError, match="vector_field must return shape"):
        cpl.plot_phase_portrait(S, vector_field=lambda X: X[:, :1])


def test_training_curves_from_several_history_forms(tmp_path):
    ep = np.arange(30)
    hist = {"epoch": ep, "loss": np.exp(-ep / 8), "val_loss": 1.3 * np.exp(-ep / 9),
            "note": "text is ignored"}
    fig = cpl.plot_training_curves(hist, title="fit")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_loss"]
    _png(fig, tmp_path / "train.png")
    records = [{"nit": k, "loss": float(v)} for k, v in enumerate(np.exp(-ep / 5))]
    fig = cpl.plot_training_curves(SimpleNamespace(history=records))
    assert fig.axes[0].get_xlabel() == "nit"
    _png(fig, tmp_path / "train2.png")
    fig = cpl.plot_training_curves([3.0, 1.0, -0.5])            # a plain curve, not positive
    assert fig.axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="no numeric curves"):
        cpl.plot_training_curves({"note": "x"})
    with pytest.raises(ValueError, match="no curve"):
        cpl.plot_training_curves(hist, keys=["train"])


def test_arm_figures(tmp_path):
    arm = PlanarArm()
    Q = arm.sample_postures(4, 0)
    fig = cpl.plot_arm_postures(arm, Q, targets=arm.fk(Q), title="postures")
    _png(fig, tmp_path / "arm.png")
    # each posture's link polyline ends at its hand position
    links = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == arm.n_joints + 1]
    assert len(links) == 4
    np.testing.assert_allclose([ln.get_xydata()[-1] for ln in links], arm.fk(Q))
    with pytest.raises(ValueError, match=r"targets must have shape \(4, 2\)"):
        cpl.plot_arm_postures(arm, Q, targets=np.zeros((3, 2)))
    xs = np.linspace(-2.4, 2.4, 25)
    E = np.abs(np.subtract.outer(xs, xs)) + 1e-4
    E[0, 0] = np.nan
    fig = cpl.plot_error_map(xs, xs, E, circle=arm.reach, points=arm.grid_targets(9))
    assert len(fig.axes) == 2                                   # the map and its colorbar
    _png(fig, tmp_path / "err.png")
    with pytest.raises(ValueError, match=r"values must have shape \(len\(ys\), len\(xs\)\)"):
        cpl.plot_error_map(xs, xs[:5], E)


def test_truck_and_car_figures(tmp_path):
    tr = TruckBackerUpper()
    r = tr.simulate(tr.sample_starts(5, 0), lambda X: 0.3 * np.sin(X[:, 2:3]), 150,
                    stop=tr.terminated)
    fig = cpl.plot_truck_paths(tr, r.states, lengths=r.steps, every=40, title="truck")
    _png(fig, tmp_path / "truck.png")
    paths = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) > 5]
    assert sorted(len(ln.get_xdata()) for ln in paths) == sorted(r.steps + 1)
    with pytest.raises(ValueError, match=r"lengths must have shape \(5,\)"):
        cpl.plot_truck_paths(tr, r.states, lengths=[3])

    car = Car()
    U = np.tile([0.3, 1.0], (120, 1))
    S = car.rollout(CAR_X0, U)
    fig = cpl.plot_car_paths([S, S[:60]], controls=[U, U[:60]], labels=["plan", "optimum"],
                             every=30)
    _png(fig, tmp_path / "car.png")
    # target car plus two paths, each drawn as body and wheels
    assert len(fig.axes[0].collections) == 2 * 3
    with pytest.raises(ValueError, match="2 paths but 1 control sequences"):
        cpl.plot_car_paths([S, S], controls=[U])

    fig, axes = cpl.new_figure(1, 2)
    cpl.draw_truck(axes[0], tr, [20.0, 0.0, 0.3, 0.0])
    cpl.draw_car(axes[1], CAR_X0, wheel_angles=0.4)
    _png(fig, tmp_path / "panels.png")
    with pytest.raises(ValueError, match="truck states must have 4 columns"):
        cpl.draw_truck(axes[0], tr, [1.0, 2.0])


def test_save_figure_errors(tmp_path):
    with pytest.raises(TypeError, match="matplotlib Figure"):
        cpl.save_figure("not a figure", tmp_path / "x.png")


def test_learning_curve(tmp_path):
    steps, returns = [400, 800, 1200], [-900.0, -300.0, -150.0]
    fig = cpl.plot_learning_curve(steps, returns, std=[100.0, 50.0, 20.0],
                                  references=[("SAC", -157, 20000), ("random", -1200)],
                                  goal=(-155, 2000), title="Pendulum-v1")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ctrlprop", "SAC (20,000 steps)", "random",
                      "goal: >= -155 within 2,000 steps"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), returns)
    assert [ln.get_ydata()[0] for ln in ax.lines[1:]] == [-157, -1200]
    _png(fig, tmp_path / "curve.png")
    with pytest.raises(ValueError, match="one length"):
        cpl.plot_learning_curve([1, 2], [1.0])
    with pytest.raises(TypeError, match="returns"):
        cpl.plot_learning_curve([1, 2], "ab")
