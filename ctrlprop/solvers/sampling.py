"""Sampling planners: the cross-entropy method (with iCEM's colored noise) and MPPI.

Notation: N independent problems (initial states x starts), each a control sequence
``U`` of T steps of m controls; P candidates sampled per problem and iteration.  The
planners see the problem only through ``evaluate(S) -> costs``: S (N, P, T, m) candidates,
costs (N, P), one vectorized rollout of all N * P trajectories.  Candidates are clipped into
the box ``[lo, hi]`` (so every control evaluated and returned respects the bounds).

CEM (Rubinstein; PETS; iCEM, Pinneri et al. 2020), per problem::

    S_p = clip(mu + sigma * eps_p),  eps_p ~ N(0, 1) white or colored (PSD ~ 1/f^beta in t)
    the `elites` lowest-cost candidates: mu' , sigma' = their mean and standard deviation
    mu <- alpha mu + (1 - alpha) mu',   sigma <- max(alpha sigma + (1 - alpha) sigma', min_std)
    (iCEM: a fraction `keep_elites` of the elites is carried into the next population)

and the lowest-cost candidate ever sampled is the answer.

MPPI (Williams et al. 2017), per problem::

    S_p = clip(mu + sigma * eps_p),   w_p = exp(-(J_p - min_q J_q) / temperature)
    mu <- sum_p w_p S_p / sum_p w_p

and the answer is the final ``mu`` (its cost is one more rollout).
"""

import numpy as np

from ..core.checks import check_int
from .batch_lbfgs import BATCH_LBFGS_OPTIONS

__all__ = ["cem", "mppi", "colored_noise", "sampling_options", "SAMPLING_OPTIONS"]

# option -> default, per method ("cem-gd" = cem's plus the refinement's)
# (``workers``: threads the candidates' rollouts are split across, see
# :class:`ctrlprop.planning.sampling.Sampler`)
SAMPLING_OPTIONS = {
    "cem": dict(population=400, elites=40, alpha=0.1, init_std=None, min_std=1e-3,
                noise_beta=0.0, keep_elites=0.0, workers=1),
    "mppi": dict(population=400, temperature=1.0, init_std=None, noise_beta=0.0, workers=1),
}
SAMPLING_OPTIONS["cem-gd"] = dict(SAMPLING_OPTIONS["cem"], refine=5, gd_maxiter=20,
                                  gd_options=None)


def _number(v, name, lo=None, hi=None, open_lo=False):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                               np.floating)):
        raise TypeError(f"options[{name!r}] must be a number, got {v!r:.60}")
    v = float(v)
    bad = (not np.isfinite(v) or (lo is not None and (v <= lo if open_lo else v < lo))
           or (hi is not None and v > hi))
    if bad:
        rng = f"{'(' if open_lo else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"options[{name!r}] must be in {rng}, got {v}")
    return v


def sampling_options(options, method):
    """The options of sampling ``method`` ("cem", "mppi", "cem-gd") with their defaults,
    checked; unknown keys raise a ValueError listing the accepted ones."""
    defaults = SAMPLING_OPTIONS[method]
    options = {} if options is None else dict(options)
    bad = set(options) - set(defaults)
    if bad:
        raise ValueError(f"unknown option(s) {sorted(bad)} for method {method!r}; it takes "
                         f"{sorted(defaults)} (and maxiter=, its iterations)")
    o = dict(defaults, **options)
    o["population"] = check_int(o["population"], "options['population']", 2)
    o["workers"] = check_int(o["workers"], "options['workers']", 1)
    if "elites" in o:
        o["elites"] = check_int(o["elites"], "options['elites']", 1)
        if o["elites"] > o["population"]:
            raise ValueError(f"options['elites'] ({o['elites']}) must not exceed "
                             f"options['population'] ({o['population']})")
        o["alpha"] = _number(o["alpha"], "alpha", 0.0, 1.0)
        o["min_std"] = _number(o["min_std"], "min_std", 0.0)
        o["keep_elites"] = _number(o["keep_elites"], "keep_elites", 0.0, 1.0)
    if "temperature" in o:
        o["temperature"] = _number(o["temperature"], "temperature", 0.0, open_lo=True)
    if o["init_std"] is not None:
        o["init_std"] = _number(o["init_std"], "init_std", 0.0, open_lo=True)
    o["noise_beta"] = _number(o["noise_beta"], "noise_beta", 0.0, 4.0)
    if "refine" in o:
        o["refine"] = check_int(o["refine"], "options['refine']", 1)
        if o["refine"] > o["elites"]:
            raise ValueError(f"options['refine'] ({o['refine']}) must not exceed "
                             f"options['elites'] ({o['elites']}): the refined candidates "
                             "are the best elites")
        o["gd_maxiter"] = check_int(o["gd_maxiter"], "options['gd_maxiter']", 1)
        if o["gd_options"] is not None and not isinstance(o["gd_options"], dict):
            raise TypeError(f"options['gd_options'] must be a dict of batch-lbfgs options, got "
                            f"{type(o['gd_options']).__name__}")
        bad = set(o["gd_options"] or {}) - set(BATCH_LBFGS_OPTIONS)
        if bad:
            raise ValueError(f"unknown key(s) {sorted(bad)} in options['gd_options']; "
                             f"batch-lbfgs takes {list(BATCH_LBFGS_OPTIONS)} (its iterations: "
                             f"options['gd_maxiter'])")
    return o


def colored_noise(rng, shape, beta):
    """Standard normal noise (..., T, m) whose power spectrum along T falls as 1/f^beta
    (beta = 0: white; iCEM uses 2-2.5), each entry of unit variance."""
    if beta == 0:
        return rng.standard_normal(shape)
    *lead, T, m = shape
    f = np.fft.rfftfreq(T)
    f[0] = 1.0 / T                                      # the mean gets the lowest frequency's power
    s = f ** (-beta / 2.0)
    X = (rng.standard_normal((*lead, m, len(f))) + 1j * rng.standard_normal((*lead, m, len(f))))
    x = np.fft.irfft(X * s, n=T, axis=-1)
    # variance of irfft's output: (s_0^2 + 4 sum s_k^2 + s_Nyquist^2) / T^2
    w = np.full(len(f), 4.0)
    w[0] = 1.0
    if T % 2 == 0:
        w[-1] = 1.0
    x /= np.sqrt(np.sum(w * s * s)) / T
    return np.moveaxis(x, -1, -2)


def _initial_std(init_std, lo, hi):
    """sigma_0 (T, m): init_std, or a quarter of the box width where it is finite (PETS's
    variance (hi - lo)^2 / 16) and 1 elsewhere."""
    if init_std is not None:
        return np.full(lo.shape, init_std)
    width = hi - lo
    return np.where(np.isfinite(width), width / 4.0, 1.0)


def cem(evaluate, U0, lo, hi, rng, *, maxiter, population, elites, alpha, init_std, min_std,
        noise_beta, keep_elites, notify=None):
    """The cross-entropy method on N problems at once (see the module docstring).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(S (N, P, T, m)) -> (N, P)`` costs.
    U0 : ndarray (N, T, m)
        The initial means (a warm start), within the bounds.
    lo, hi : ndarray (T, m)
    rng : np.random.Generator
    maxiter : int
        Iterations (>= 1).
    notify : callable, optional
        ``notify(x=mean (N, T, m), fun=best costs summed, nit=iteration)`` after every
        iteration; a true return stops.

    Returns
    -------
    dict
        ``x`` (N, T, m) the best candidates, ``fun`` (N,) their costs, ``mean``, ``std``,
        ``elites`` (N, elites, T, m) and ``elite_fun`` (N, elites) of the last iteration
        (sorted), ``nit``, ``nfev`` (trajectories evaluated), ``history`` {"fun": best
        cost summed over the problems, per iteration}, ``stopped`` (by notify).
    """
    N, T, m = U0.shape
    P, k = population, elites
    nk = int(round(keep_elites * k))
    mean = U0.copy()
    std = np.broadcast_to(_initial_std(init_std, lo, hi), (N, T, m)).copy()
    best_x = U0.copy()
    best_f = evaluate(U0[:, None])[:, 0]
    best_f[~np.isfinite(best_f)] = np.inf                # any finite candidate replaces it
    nfev, hist, kept, stopped = N, [float(best_f.sum())], None, False
    E = Ef = None
    rows = np.arange(N)[:, None]
    nit = 0
    for it in range(1, maxiter + 1):
        S = mean[:, None] + std[:, None] * colored_noise(rng, (N, P, T, m), noise_beta)
        if kept is not None:                           # iCEM: last elites join the population
            S[:, P - nk:] = kept
        np.clip(S, lo, hi, out=S)
        f = evaluate(S)
        nfev += N * P
        order = np.argsort(np.where(np.isfinite(f), f, np.inf), axis=1, kind="stable")[:, :k]
        E, Ef = S[rows, order], f[rows, order]
        mean = alpha * mean + (1.0 - alpha) * E.mean(axis=1)
        std = np.maximum(alpha * std + (1.0 - alpha) * E.std(axis=1), min_std)
        better = Ef[:, 0] < best_f
        best_x[better], best_f[better] = E[better, 0], Ef[better, 0]
        kept = E[:, :nk].copy() if nk else None
        hist.append(float(best_f.sum()))
        nit = it
        if notify is not None and notify(x=mean, fun=float(best_f.sum()), nit=it):
            stopped = True
            break
    return dict(x=best_x, fun=best_f, mean=mean, std=std, elites=E, elite_fun=Ef, nit=nit,
                nfev=nfev, history={"fun": np.array(hist)}, stopped=stopped)


def mppi(evaluate, U0, lo, hi, rng, *, maxiter, population, temperature, init_std,
         noise_beta, notify=None):
    """Model-predictive path integral control's update on N problems (module docstring).

    Arguments and returns as :func:`cem` (without elites); ``x`` is the final mean and
    ``fun`` its cost.
    """
    N, T, m = U0.shape
    P = population
    mean = U0.copy()
    std = _initial_std(init_std, lo, hi)
    hist, nfev, stopped, nit = [], 0, False, 0
    for it in range(1, maxiter + 1):
        S = mean[:, None] + std * colored_noise(rng, (N, P, T, m), noise_beta)
        np.clip(S, lo, hi, out=S)
        f = evaluate(S)
        nfev += N * P
        fin = np.where(np.isfinite(f), f, np.inf)
        ok = np.isfinite(fin).any(axis=1)                # a problem with no finite cost keeps
        low = np.where(ok, fin.min(axis=1), 0.0)[:, None]    # its mean
        w = np.where(ok[:, None], np.exp(-(fin - low) / temperature), 0.0)
        w[~ok] = 1.0
        w /= w.sum(axis=1, keepdims=True)
        mean = np.where(ok[:, None, None], np.clip(np.einsum("np,nptm->ntm", w, S), lo, hi),
                        mean)
        hist.append(float(np.sum(fin.min(axis=1))))
        nit = it
        if notify is not None and notify(x=mean, fun=hist[-1], nit=it):
            stopped = True
            break
    fun = evaluate(mean[:, None])[:, 0]
    nfev += N
    return dict(x=mean, fun=fun, mean=mean, std=np.broadcast_to(std, (N, T, m)).copy(),
                nit=nit, nfev=nfev, history={"fun": np.array(hist + [float(fun.sum())])},
                stopped=stopped)
