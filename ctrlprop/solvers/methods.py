"""The one registry of method names, shared by every entry point.

Each entry point says which methods it offers (those whose needs its objective meets: an
exact Hessian product, residuals, a batched evaluation); :func:`resolve` turns the user's
``method=`` into a :class:`Method` (case-insensitive), picks the documented automatic
choice for ``method=None``, and raises a ValueError listing what that entry point offers.

=================  ==============  ===============================================
name               family          uses
=================  ==============  ===============================================
L-BFGS-B           minimize        gradient; bounds
dense-lbfgsb       minimize        ctrlprop's L-BFGS-B for small problems (dense matrix,
                                   compiled direction, little per-call overhead); bounds
BFGS, CG           minimize        gradient
TNC                minimize        gradient; bounds (maxiter counts evaluations)
SLSQP              minimize        gradient; bounds; exact constraints
Newton-CG          minimize        gradient and exact Hessian products (hessp)
trust-ncg          minimize        gradient and hessp
trust-krylov       minimize        gradient and hessp
trust-constr       minimize        gradient and hessp; bounds; exact constraints
trust-exact        minimize        gradient and the full Hessian (hess)
dogleg             minimize        gradient and the full, positive definite Hessian
lm                 least_squares   residuals and exact Jacobian (MINPACK; no bounds)
trf, dogbox        least_squares   residuals and exact Jacobian; bounds
batch-lm           batch           ctrlprop's batched projected Levenberg-Marquardt
batch-lbfgs        batch           ctrlprop's batched projected L-BFGS
ilqr               ddp             ctrlprop's batched iLQR (step Jacobians, cost Hessians,
                                   feedback gains); bounds by the box QP
ddp                ddp             iLQR plus the second-order dynamics terms (exact DDP)
cem                sampling        candidates' costs only (one batched rollout per
                                   iteration); bounds by clipping the samples
mppi               sampling        the same; a cost-weighted mean of the samples
cem-gd             sampling        CEM, then its best elites refined by batch-lbfgs
adam               stochastic      minibatch gradients (training only)
=================  ==============  ===============================================
"""

from dataclasses import dataclass

__all__ = ["Method", "METHODS", "resolve", "names"]


@dataclass(frozen=True)
class Method:
    """One solver method: its name, family and what it needs or supports."""

    name: str
    family: str                 # "minimize", "least_squares", "batch", "ddp", "sampling",
    #                             "stochastic"
    bounds: bool = False        # handles box bounds
    hessp: bool = False         # uses exact Hessian-vector products
    hess: bool = False          # uses the full Hessian
    constraints: bool = False   # takes exact nonlinear constraints


METHODS = {m.name.lower(): m for m in (
    Method("L-BFGS-B", "minimize", bounds=True),
    Method("dense-lbfgsb", "minimize", bounds=True),
    Method("BFGS", "minimize"),
    Method("CG", "minimize"),
    Method("TNC", "minimize", bounds=True),
    Method("SLSQP", "minimize", bounds=True, constraints=True),
    Method("Newton-CG", "minimize", hessp=True),
    Method("trust-ncg", "minimize", hessp=True),
    Method("trust-krylov", "minimize", hessp=True),
    Method("trust-constr", "minimize", bounds=True, hessp=True, constraints=True),
    Method("trust-exact", "minimize", hess=True),
    Method("dogleg", "minimize", hess=True),
    Method("lm", "least_squares"),
    Method("trf", "least_squares", bounds=True),
    Method("dogbox", "least_squares", bounds=True),
    Method("batch-lm", "batch", bounds=True),
    Method("batch-lbfgs", "batch", bounds=True),
    Method("ilqr", "ddp", bounds=True),
    Method("ddp", "ddp", bounds=True),
    Method("cem", "sampling", bounds=True),
    Method("mppi", "sampling", bounds=True),
    Method("cem-gd", "sampling", bounds=True),
    Method("adam", "stochastic"),
)}


def names(offered):
    """The canonical spellings of the offered method names, in registry order."""
    offered = {o.lower() for o in offered}
    return [m.name for k, m in METHODS.items() if k in offered]


def resolve(method, offered, default, what="method"):
    """The :class:`Method` for ``method`` among the ``offered`` names.

    Parameters
    ----------
    method : str or None
        None selects ``default``.
    offered : iterable of str
        The names this entry point supports.
    default : str
        The automatic choice (documented by the entry point).
    what : str
        The entry point, for the error message.

    Raises
    ------
    TypeError
        For a non-string method.
    ValueError
        For an unknown name or one this entry point does not offer; the message lists
        the offered names.
    """
    if method is None:
        method = default
    if not isinstance(method, str):
        raise TypeError(f"method must be a string or None, got {type(method).__name__}")
    m = METHODS.get(method.lower())
    offer = names(offered)
    if m is None or m.name not in offer:
        known = "" if m is None else f" ({m.name} is not offered here)"
        raise ValueError(f"unknown method {method!r} for {what}{known}; choose one of "
                         f"{offer} or None (the automatic choice, {default!r})")
    return m
