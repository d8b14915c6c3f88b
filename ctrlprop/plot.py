"""Figures for the scenarios: time series, paths, training curves, arms, trucks, cars, maps.

matplotlib is imported lazily, inside the functions, so ``import ctrlprop`` never loads it
(install it with ``pip install 'ctrlprop[plot]'``).

Backend: the functions never import ``matplotlib.pyplot`` and never call ``matplotlib.use``.
Every figure is a ``matplotlib.figure.Figure`` attached to its own Agg canvas
(``FigureCanvasAgg``). So figures render headless whatever backend is configured, an
interactive session keeps the backend its user chose, and nothing is registered in pyplot's
global figure list (nothing to close, no leak in long loops). Write figures with
:func:`save_figure`; in Jupyter, displaying the returned figure shows it inline.

``plot_*`` functions make and return a new Figure; ``draw_*`` functions draw on an ``Axes``
you pass (get one from :func:`new_figure`) and return it, so panels can be combined.
"""

from pathlib import Path

import numpy as np

__all__ = ["new_figure", "save_figure", "plot_time_series", "plot_paths",
           "plot_training_curves", "draw_arm", "plot_arm_postures", "draw_truck",
           "plot_truck_paths", "draw_car", "plot_car_paths", "plot_error_map",
           "plot_phase_portrait", "plot_learning_curve"]

_X_KEYS = ("epoch", "epochs", "iteration", "iterations", "iter", "nit", "step", "steps", "nfev")


def _mpl():
    """Import the two matplotlib classes used here, with a helpful error."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("ctrlprop.plot needs matplotlib: pip install 'ctrlprop[plot]'") from e
    return Figure, FigureCanvasAgg


def new_figure(nrows=1, ncols=1, figsize=None, sharex=False, squeeze=True, **subplot_kw):
    """A Figure on its own Agg canvas, with a grid of axes.

    Parameters
    ----------
    nrows, ncols : int
    figsize : (float, float), optional
        Inches; default ``(5 * ncols, 4 * nrows)``.
    sharex : bool
    squeeze : bool
        As in ``Figure.subplots``: a single Axes rather than a 1x1 array.
    **subplot_kw
        Passed to every axes (e.g. ``aspect="equal"``).

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : Axes or ndarray of Axes
    """
    Figure, Canvas = _mpl()
    fig = Figure(figsize=figsize or (5.0 * ncols, 4.0 * nrows), layout="constrained")
    Canvas(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=squeeze,
                        subplot_kw=subplot_kw or None)
    return fig, axes


def save_figure(fig, path, dpi=120):
    """Write ``fig`` to ``path`` (format from the suffix, e.g. ``.png``), creating folders.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
    dpi : int

    Returns
    -------
    path : Path
    """
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# ---- input helpers --------------------------------------------------------------------------
def _array(a, name, ndim=None):
    """A float array, checked for its number of dimensions."""
    try:
        a = np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}") from None
    if ndim is not None and a.ndim not in np.atleast_1d(ndim):
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def _paths(paths, name, width):
    """A list of (T_i, >=width) arrays from one array (T, k), a stack (B, T, k) or a list."""
    if isinstance(paths, (list, tuple)):
        out = [_array(p, f"{name}[{i}]", 2) for i, p in enumerate(paths)]
    else:
        a = _array(paths, name, (2, 3))
        out = [a] if a.ndim == 2 else list(a)
    if not out:
        raise ValueError(f"{name} is empty")
    for i, p in enumerate(out):
        if p.shape[1] < width:
            raise ValueError(f"{name}[{i}] needs at least {width} columns, got shape {p.shape}")
    return out


def _colors(n, cmap="viridis"):
    """n colours: the default cycle for few lines, a colormap for many."""
    import matplotlib as mpl
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    return list(mpl.colormaps[cmap](np.linspace(0.0, 0.9, n)))


def _polys(origin, heading, back, front, half_width, offset=0.0, turn=0.0):
    """Closed rectangles ``[back, front] x [-half_width, half_width]`` in a body frame.

    The body frame sits at ``origin`` (K, 2) with ``heading`` (K,); the rectangle is first
    turned by ``turn`` (K,) about its local point ``(offset_along, offset_across)`` given by
    ``offset`` = (along, across). Returns (K, 5, 2) polygons.
    """
    local = np.array([[back, -half_width], [front, -half_width], [front, half_width],
                      [back, half_width], [back, -half_width]])
    turn = np.broadcast_to(np.asarray(turn, float), heading.shape)
    ct, st = np.cos(turn)[:, None], np.sin(turn)[:, None]
    px = local[:, 0] * ct - local[:, 1] * st
    py = local[:, 0] * st + local[:, 1] * ct
    along, across = offset if np.ndim(offset) else (offset, 0.0)
    px, py = px + along, py + across
    c, s = np.cos(heading)[:, None], np.sin(heading)[:, None]
    return np.stack([origin[:, :1] + px * c - py * s, origin[:, 1:2] + px * s + py * c], -1)


# ---- time series, paths, training curves ----------------------------------------------------
def plot_time_series(states, controls=None, dt=1.0, plant=None, state_labels=None,
                     control_labels=None, predicted=None, control_limits=None, title=None):
    """States and controls against time, one panel per signal.

    Parameters
    ----------
    states : array_like, shape (T+1, n) or (T, n)
        ``states[k]`` at time ``k * dt``.
    controls : array_like, shape (T, m), optional
        Drawn as steps held over ``[k dt, (k+1) dt)``.
    dt : float
        Time step; taken from ``plant.dt`` when a plant is given and ``dt`` is left at 1.
    plant : Plant, optional
        Supplies default labels (``state_names``, ``control_names``), ``dt`` and the control
        limits.
    state_labels, control_labels : sequence of str, optional
    predicted : array_like, shape (T', n), optional
        A model's prediction of the states, overlaid dashed ("predicted" against "actual").
    control_limits : (array_like, array_like), optional
        ``(low, high)`` per control, drawn dotted.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    X = _array(states, "states", 2)
    U = None if controls is None else _array(controls, "controls", 2)
    P = None if predicted is None else _array(predicted, "predicted", 2)
    if P is not None and P.shape[1] != X.shape[1]:
        raise ValueError(f"predicted must have {X.shape[1]} columns like states, "
                         f"got shape {P.shape}")
    if plant is not None:
        dt = plant.dt if dt == 1.0 else dt
        state_labels = state_labels or plant.state_names
        control_labels = control_labels or plant.control_names
        if control_limits is None:
            control_limits = (plant.u_low, plant.u_high)
    n, m = X.shape[1], 0 if U is None else U.shape[1]
    state_labels = list(state_labels or [f"x{i}" for i in range(n)])
    control_labels = list(control_labels or [f"u{i}" for i in range(m)])
    if len(state_labels) != n or len(control_labels) != m:
        raise ValueError(f"need {n} state labels and {m} control labels, got "
                         f"{len(state_labels)} and {len(control_labels)}")
    fig, axes = new_figure(n + m, 1, figsize=(7.0, 1.8 * (n + m) + 0.6), sharex=True,
                           squeeze=False)
    axes = axes[:, 0]
    t = dt * np.arange(X.shape[0])
    for i in range(n):
        ax = axes[i]
        ax.plot(t, X[:, i], color="C0", label="actual" if P is not None else None)
        if P is not None:
            ax.plot(dt * np.arange(P.shape[0]), P[:, i], "--", color="C1", label="predicted")
        ax.set_ylabel(state_labels[i])
        ax.grid(alpha=0.3)
    if P is not None:
        axes[0].legend(loc="best", fontsize="small")
    for j in range(m):
        ax = axes[n + j]
        tu = dt * np.arange(U.shape[0] + 1)
        ax.stairs(U[:, j], tu, color="C2", baseline=None)
        if control_limits is not None:
            for lim in (control_limits[0], control_limits[1]):
                ax.axhline(np.broadcast_to(lim, (m,))[j], color="0.5", ls=":", lw=1)
        ax.set_ylabel(control_labels[j])
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time" if dt != 1.0 else "step")
    if title:
        fig.suptitle(title)
    return fig


def plot_paths(paths, labels=None, xy=(0, 1), start_marker=True, target=None, xlim=None,
               ylim=None, xlabel="x", ylabel="y", title=None, equal=True):
    """Many 2-D paths on one axes.

    Parameters
    ----------
    paths : array_like (T, k) or (B, T, k), or a list of (T_i, k) arrays
        Trajectories; columns ``xy`` are plotted.
    labels : sequence of str, optional
        One legend entry per path.
    xy : (int, int)
        The two state columns to draw.
    start_marker : bool
        Mark starts with a dot and ends with a cross.
    target : (float, float), optional
        Drawn as a star.
    xlim, ylim : (float, float), optional
    xlabel, ylabel, title : str
    equal : bool
        Equal aspect ratio.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ps = _paths(paths, "paths", max(xy) + 1)
    if labels is not None and len(labels) != len(ps):
        raise ValueError(f"{len(ps)} paths but {len(labels)} labels")
    fig, ax = new_figure(figsize=(6.0, 5.0))
    cols = _colors(len(ps))
    for k, p in enumerate(ps):
        ax.plot(p[:, xy[0]], p[:, xy[1]], color=cols[k], lw=1.2,
                label=None if labels is None else labels[k])
        if start_marker:
            ax.plot(p[0, xy[0]], p[0, xy[1]], "o", color=cols[k], ms=4)
            ax.plot(p[-1, xy[0]], p[-1, xy[1]], "x", color=cols[k], ms=5)
    if target is not None:
        ax.plot(*target, "*", color="crimson", ms=14, label="target")
    _finish(ax, xlim, ylim, xlabel, ylabel, title, equal, legend=labels is not None
            or target is not None)
    return fig


def _finish(ax, xlim, ylim, xlabel, ylabel, title, equal, legend=False):
    """Limits, labels, grid and legend for a 2-D axes."""
    if equal:
        ax.set_aspect("equal", adjustable="datalim" if xlim is None or ylim is None else "box")
    if xlim is not None:
        ax.set_xlim(xlim)
    if ylim is not None:
        ax.set_ylim(ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="best", fontsize="small")


def _history_columns(history):
    """Normalise a training history to (x label, x values or None, {name: values})."""
    if hasattr(history, "history") and not isinstance(history, dict):
        history = history.history
    if isinstance(history, (list, tuple)) and history and isinstance(history[0], dict):
        keys = [k for k in history[0] if all(k in r for r in history)]
        history = {k: [r[k] for r in history] for k in keys}
    if not isinstance(history, dict):
        a = _array(history, "history", 1)
        history = {"loss": a}
    cols = {}
    for k, v in history.items():
        try:
            a = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            continue
        if a.ndim == 1 and a.size > 0:
            cols[str(k)] = a
    xkey = next((k for k in _X_KEYS if k in cols), None)
    x = cols.pop(xkey) if xkey else None
    curves = {k: v for k, v in cols.items() if x is None or v.size == x.size}
    if not curves:
        raise ValueError(f"history has no numeric curves; got keys {list(history)}")
    return xkey, x, curves


def plot_training_curves(history, log=True, title=None, keys=None):
    """Loss curves (training, validation, ...) from a training history.

    Parameters
    ----------
    history : dict, list of dict, sequence of float, or object with a ``history`` attribute
        A dict ``{name: values per epoch}`` (e.g. ``{"loss": [...], "val_loss": [...]}``), a
        list of per-epoch records ``[{"epoch": 0, "loss": ...}, ...]``, or one curve. A key
        among ``epoch``, ``iteration``, ``iter``, ``nit``, ``step``, ``nfev`` is used as the
        x-axis; every other numeric column is a curve.
    log : bool
        Logarithmic y-axis (linear anyway if a value is not positive).
    title : str, optional
    keys : sequence of str, optional
        Only these curves.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xkey, x, curves = _history_columns(history)
    if keys is not None:
        missing = [k for k in keys if k not in curves]
        if missing:
            raise ValueError(f"history has no curve {missing}; it has {list(curves)}")
        curves = {k: curves[k] for k in keys}
    fig, ax = new_figure(figsize=(6.0, 4.0))
    for k, v in curves.items():
        xs = x if x is not None else np.arange(v.size)
        ax.plot(xs, v, lw=1.5, label=k, ls="--" if k.startswith("val") else "-")
    finite = np.concatenate([v[np.isfinite(v)] for v in curves.values()])
    if log and finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel(xkey or "epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


# ---- arm ------------------------------------------------------------------------------------
def draw_arm(ax, arm, q, color="C0", alpha=1.0, target=None, label=None):
    """Draw arm postures: links, joints and hand.

    Parameters
    ----------
    ax : matplotlib Axes
    arm : PlanarArm
    q : array_like, shape (n_joints,) or (K, n_joints)
    color, alpha, label
        Line style.
    target : array_like, shape (2,) or (K, 2), optional
        Targets, drawn as crosses.

    Returns
    -------
    ax
    """
    pts = arm.joint_positions(q)
    pts = pts[None] if pts.ndim == 2 else pts
    for k, p in enumerate(pts):
        ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=2.5, alpha=alpha, solid_capstyle="round",
                label=label if k == 0 else None)
        ax.plot(p[1:-1, 0], p[1:-1, 1], "o", color=color, ms=4, alpha=alpha)
        ax.plot(p[-1, 0], p[-1, 1], "o", mfc="white", mec=color, ms=5, alpha=alpha)
    ax.plot(0.0, 0.0, "s", color="0.2", ms=8)
    if target is not None:
        t = np.atleast_2d(_array(target, "target"))
        ax.plot(t[:, 0], t[:, 1], "x", color="crimson", ms=8, mew=2)
    return ax


def plot_arm_postures(arm, postures, targets=None, title=None, reach_circle=True):
    """Several arm postures (one colour each), with their targets.

    Parameters
    ----------
    arm : PlanarArm
    postures : array_like, shape (K, n_joints)
    targets : array_like, shape (K, 2), optional
    title : str, optional
    reach_circle : bool
        Draw the workspace boundary ``|p| = reach``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    Q = _array(postures, "postures", 2)
    T = None if targets is None else _array(targets, "targets", 2)
    if T is not None and T.shape != (Q.shape[0], 2):
        raise ValueError(f"targets must have shape ({Q.shape[0]}, 2), got {T.shape}")
    fig, ax = new_figure(figsize=(5.5, 5.5))
    if reach_circle:
        a = np.linspace(0, 2 * np.pi, 200)
        ax.plot(arm.reach * np.cos(a), arm.reach * np.sin(a), ":", color="0.5", lw=1)
    for k, c in enumerate(_colors(Q.shape[0])):
        draw_arm(ax, arm, Q[k], color=c, target=None if T is None else T[k])
    lim = 1.08 * arm.reach
    _finish(ax, (-lim, lim), (-lim, lim), "x", "y", title, True)
    return fig


# ---- truck ----------------------------------------------------------------------------------
def draw_truck(ax, truck, states, color="C0", alpha=0.9, width=1.0):
    """Draw truck-and-trailer outlines (one per state) on ``ax``.

    The trailer is a box from its rear ``(x, y)`` to the hitch (length ``d1``); the cab a box
    from just behind the hitch to ``L`` ahead of it along the cab heading, with a dot at the
    hitch.

    Parameters
    ----------
    ax : matplotlib Axes
    truck : TruckBackerUpper
    states : array_like, shape (4,) or (K, 4)
    color, alpha : outline style
    width : float
        Width of the truck in yard units.

    Returns
    -------
    ax
    """
    from matplotlib.collections import PolyCollection
    S = np.atleast_2d(_array(states, "states", (1, 2)))
    if S.shape[1] != 4:
        raise ValueError(f"truck states must have 4 columns, got shape {S.shape}")
    h = truck.hitch(S)
    trailer = _polys(S[:, :2], S[:, 3], 0.0, truck.d1, width / 2)
    cab = _polys(h, S[:, 2], -0.25, truck.L + 0.25, 0.4 * width)
    ax.add_collection(PolyCollection(trailer, closed=True, facecolors="none",
                                     edgecolors=color, alpha=alpha, lw=1.0))
    ax.add_collection(PolyCollection(cab, closed=True, facecolors=color, edgecolors=color,
                                     alpha=0.5 * alpha, lw=1.0))
    ax.plot(h[:, 0], h[:, 1], ".", color=color, ms=3, alpha=alpha)
    ax.autoscale_view()
    return ax


def plot_truck_paths(truck, trajectories, lengths=None, every=60, title=None, yard=True):
    """Trailer-rear paths from many starts, with the truck drawn along each.

    Parameters
    ----------
    truck : TruckBackerUpper
    trajectories : array_like (T+1, 4) or (B, T+1, 4), or a list of (T_i, 4) arrays
    lengths : array_like of int, shape (B,), optional
        Steps actually taken by each trajectory (e.g. ``Rollout.steps``); later states are
        not drawn.
    every : int
        Draw the truck every ``every`` steps, and at the start and the end.
    title : str, optional
    yard : bool
        Draw the yard boundary and the dock.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ps = _paths(trajectories, "trajectories", 4)
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=int)
        if lengths.shape != (len(ps),):
            raise ValueError(f"lengths must have shape ({len(ps)},), got {lengths.shape}")
        ps = [p[:n + 1] for p, n in zip(ps, lengths)]
    fig, ax = new_figure(figsize=(9.0, 5.5))
    if yard:
        (x0, x1), (y0, y1) = truck.x_range, truck.y_range
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="0.4", lw=1)
        ax.plot([0, 0], [-1.0, 1.0], color="crimson", lw=4, solid_capstyle="butt",
                label="dock")
    for p, c in zip(ps, _colors(len(ps))):
        ax.plot(p[:, 0], p[:, 1], color=c, lw=1.0)
        idx = sorted(set(range(0, len(p), max(int(every), 1))) | {len(p) - 1})
        draw_truck(ax, truck, p[idx], color=c, alpha=0.8)
    _finish(ax, None, None, "x", "y", title, True, legend=yard)
    return fig


# ---- car ------------------------------------------------------------------------------------
def draw_car(ax, states, wheel_angles=None, color="C0", alpha=0.8, d=2.0):
    """Draw car outlines (body and four wheels), one per state, on ``ax``.

    The state's ``(x, y)`` is the middle of the rear axle (as in :class:`~ctrlprop.plants.Car`);
    the body spans 1.0 behind it to ``d + 1.2`` ahead, 1.8 wide; the front wheels turn by
    the wheel angle.

    Parameters
    ----------
    ax : matplotlib Axes
    states : array_like, shape (4,) or (K, 4)  (or any >= 3 columns [x, y, theta, ...])
    wheel_angles : array_like, shape () or (K,), optional
        Front-wheel angles (the first control); straight when omitted.
    color, alpha : style
    d : float
        Axle distance.

    Returns
    -------
    ax
    """
    from matplotlib.collections import PolyCollection
    S = np.atleast_2d(_array(states, "states", (1, 2)))
    if S.shape[1] < 3:
        raise ValueError(f"car states need columns [x, y, theta, ...], got shape {S.shape}")
    K = S.shape[0]
    w = np.zeros(K) if wheel_angles is None else np.broadcast_to(
        _array(wheel_angles, "wheel_angles"), (K,))
    o, th = S[:, :2], S[:, 2]
    body = _polys(o, th, -1.0, d + 1.2, 0.9)
    wheels = [_polys(o, th, -0.4, 0.4, 0.15, offset=(x, y), turn=w if x > 0 else 0.0)
              for x in (0.0, d) for y in (-1.0, 1.0)]
    ax.add_collection(PolyCollection(body, closed=True, facecolors="none", edgecolors=color,
                                     alpha=alpha, lw=1.0))
    ax.add_collection(PolyCollection(np.concatenate(wheels), closed=True, facecolors=color,
                                     edgecolors=color, alpha=0.6 * alpha, lw=0.5))
    ax.autoscale_view()
    return ax


def plot_car_paths(paths, controls=None, labels=None, every=50, target=(0.0, 0.0, 0.0),
                   title=None, d=2.0):
    """Car paths with the car drawn along them, e.g. learned-model plan against the optimum.

    Parameters
    ----------
    paths : array_like (T+1, 4) or (B, T+1, 4), or a list of (T_i, 4) arrays
    controls : array_like (T, 2) or (B, T, 2), or a list, optional
        The wheel angles turn the drawn front wheels.
    labels : sequence of str, optional
    every : int
        Draw the car every ``every`` steps and at both ends.
    target : (x, y, theta) or None
        The parking pose, drawn as a grey car.
    title : str, optional
    d : float
        Axle distance.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ps = _paths(paths, "paths", 3)
    us = None if controls is None else _paths(controls, "controls", 1)
    if us is not None and len(us) != len(ps):
        raise ValueError(f"{len(ps)} paths but {len(us)} control sequences")
    if labels is not None and len(labels) != len(ps):
        raise ValueError(f"{len(ps)} paths but {len(labels)} labels")
    fig, ax = new_figure(figsize=(6.0, 6.0))
    if target is not None:
        draw_car(ax, np.asarray(target, float), color="0.5", alpha=0.6, d=d)
    for k, (p, c) in enumerate(zip(ps, _colors(len(ps)))):
        ax.plot(p[:, 0], p[:, 1], color=c, lw=1.5, label=None if labels is None else labels[k])
        idx = np.array(sorted(set(range(0, len(p), max(int(every), 1))) | {len(p) - 1}))
        w = None
        if us is not None:
            u = us[k]
            w = u[np.minimum(idx, len(u) - 1), 0]
        draw_car(ax, p[idx], wheel_angles=w, color=c, d=d)
    _finish(ax, None, None, "x", "y", title, True, legend=labels is not None)
    return fig


# ---- maps and phase portraits ---------------------------------------------------------------
def plot_error_map(xs, ys, values, log=True, title=None, colorbar_label="error",
                   circle=None, points=None):
    """A heat map of an error over a 2-D workspace (NaN cells left blank).

    Parameters
    ----------
    xs : array_like, shape (nx,)
    ys : array_like, shape (ny,)
        Cell centres of a regular grid.
    values : array_like, shape (ny, nx)
        ``values[i, j]`` at ``(xs[j], ys[i])``; NaN where undefined (e.g. unreachable).
    log : bool
        Logarithmic colour scale (linear anyway if a value is not positive).
    title, colorbar_label : str
    circle : float, optional
        Radius of a circle to outline (e.g. the arm's reach).
    points : array_like, shape (K, 2), optional
        Marked with small dots (e.g. the targets actually evaluated).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import LogNorm
    xs, ys = _array(xs, "xs", 1), _array(ys, "ys", 1)
    V = _array(values, "values", 2)
    if V.shape != (ys.size, xs.size):
        raise ValueError(f"values must have shape (len(ys), len(xs)) = ({ys.size}, "
                         f"{xs.size}), got {V.shape}")
    finite = V[np.isfinite(V)]
    norm = LogNorm(finite.min(), finite.max()) if log and finite.size and np.all(finite > 0) \
        and finite.max() > finite.min() else None
    fig, ax = new_figure(figsize=(6.0, 5.0))
    mesh = ax.pcolormesh(xs, ys, np.ma.masked_invalid(V), shading="nearest", cmap="viridis",
                         norm=norm)
    fig.colorbar(mesh, ax=ax, label=colorbar_label)
    if circle is not None:
        a = np.linspace(0, 2 * np.pi, 200)
        ax.plot(circle * np.cos(a), circle * np.sin(a), color="0.3", lw=1)
    if points is not None:
        P = _array(points, "points", 2)
        ax.plot(P[:, 0], P[:, 1], ".", color="white", ms=2)
    _finish(ax, None, None, "x", "y", title, True)
    return fig


def plot_phase_portrait(trajectories, labels=None, wrap=True, vector_field=None,
                        xlim=(-np.pi, np.pi), ylim=None, target=(0.0, 0.0),
                        xlabel="theta (rad)", ylabel="theta_dot (rad/s)", title=None):
    """Trajectories in the (angle, velocity) plane, optionally over a vector field.

    Parameters
    ----------
    trajectories : array_like (T, 2) or (B, T, 2), or a list of (T_i, 2) arrays
        Columns [angle, velocity].
    labels : sequence of str, optional
    wrap : bool
        Wrap the angle to ``[-pi, pi)`` and break the line where it jumps.
    vector_field : callable, optional
        ``f(X) -> dX`` on (N, 2) states (e.g. the state change of one step at zero control),
        drawn as arrows on a grid over the axes limits.
    xlim, ylim : (float, float), optional
    target : (float, float) or None
        Marked with a star (upright at rest by default).
    xlabel, ylabel, title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    ps = _paths(trajectories, "trajectories", 2)
    if labels is not None and len(labels) != len(ps):
        raise ValueError(f"{len(ps)} trajectories but {len(labels)} labels")
    fig, ax = new_figure(figsize=(6.0, 5.0))
    cols = _colors(len(ps))
    vmax = 1.0
    for k, p in enumerate(ps):
        a, v = p[:, 0].copy(), p[:, 1].copy()
        if wrap:
            a = (a + np.pi) % (2 * np.pi) - np.pi
            jump = np.flatnonzero(np.abs(np.diff(a)) > np.pi) + 1
            a, v = np.insert(a, jump, np.nan), np.insert(v, jump, np.nan)
        ax.plot(a, v, color=cols[k], lw=1.2, label=None if labels is None else labels[k])
        ax.plot(a[0], v[0], "o", color=cols[k], ms=4)
        vmax = max(vmax, float(np.nanmax(np.abs(v))))
    ylim = ylim or (-1.1 * vmax, 1.1 * vmax)
    if vector_field is not None:
        gx, gy = np.meshgrid(np.linspace(*xlim, 21), np.linspace(*ylim, 17))
        G = np.stack([gx.ravel(), gy.ravel()], 1)
        D = _array(vector_field(G), "vector_field(X)", 2)
        if D.shape != G.shape:
            raise ValueError(f"vector_field must return shape {G.shape}, got {D.shape}")
        ax.quiver(gx, gy, D[:, 0].reshape(gx.shape), D[:, 1].reshape(gx.shape), color="0.6",
                  angles="xy", width=0.002)
    if target is not None:
        ax.plot(*target, "*", color="crimson", ms=12, label="target")
    _finish(ax, xlim, ylim, xlabel, ylabel, title, False,
            legend=labels is not None or target is not None)
    return fig


def plot_learning_curve(steps, returns, std=None, references=None, goal=None, title=None,
                        label="ctrlprop"):
    """Evaluation return against interaction steps, with reference values as lines.

    Parameters
    ----------
    steps : array_like (I,)
        Interaction steps at every evaluation (e.g. a learn_and_plan result's ``steps``).
    returns : array_like (I,)
        Mean evaluation returns (its ``returns``).
    std : array_like (I,), optional
        Their standard deviation over episodes, drawn as a band.
    references : sequence of (label, value) or (label, value, steps), optional
        Published returns drawn as horizontal lines (with the steps they were reached at
        in the label when given).
    goal : (value, max_steps), optional
        A goal region: return >= value within max_steps, shaded.
    title : str, optional
    label : str

    Returns
    -------
    Figure
    """
    s, r = _array(steps, "steps", 1), _array(returns, "returns", 1)
    if s.shape != r.shape:
        raise ValueError(f"steps and returns must have one length, got {s.shape} and "
                         f"{r.shape}")
    fig, ax = new_figure(figsize=(6.4, 4.2))
    ax.plot(s, r, "o-", color="C0", label=label, zorder=3)
    if std is not None:
        sd = _array(std, "std", 1)
        ax.fill_between(s, r - sd, r + sd, color="C0", alpha=0.2, lw=0)
    for i, ref in enumerate(references or ()):
        name, value = ref[0], float(ref[1])
        text = name if len(ref) < 3 else f"{name} ({ref[2]:,} steps)"
        ax.axhline(value, color=f"C{i + 1}", ls="--", lw=1.2, label=text)
    if goal is not None:
        gv, gs = float(goal[0]), float(goal[1])
        vals = [float(np.max(r)), float(np.min(r)), gv] + [float(x[1]) for x in
                                                         (references or ())]
        top = max(vals) + 0.08 * (max(vals) - min(vals)) + 1e-9
        ax.fill_between([0, gs], gv, top, color="C2", alpha=0.12,
                        label=f"goal: >= {gv:g} within {gs:,.0f} steps")
    ax.set_xlabel("interaction steps")
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return fig
