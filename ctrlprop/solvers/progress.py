"""Progress display for long-running work: one tqdm bar, imported lazily.

``progress=True`` on any long-running entry point shows a live line on stderr with the
iteration (or step, or epoch), the current objective and the elapsed time; ``False`` (the
library's default) shows nothing.  tqdm is the ecosystem's standard progress bar; it is
an optional extra (``pip install 'ctrlprop[progress]'``), and ``progress=True`` without
it raises an ImportError that says so.
"""

__all__ = ["Progress", "check_progress"]


def check_progress(progress):
    """``progress`` as a bool, or a TypeError."""
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    return progress


class Progress:
    """A context manager around one tqdm bar (or nothing when disabled).

    Parameters
    ----------
    enabled : bool
    desc : str
        Label of the line, e.g. ``"fit"`` or ``"mpc"``.
    total : int, optional
        Expected number of updates (iterations, steps), when known.
    unit : str
    """

    def __init__(self, enabled, desc, total=None, unit="it"):
        self.bar = None
        if not check_progress(enabled):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError("progress=True shows a tqdm progress bar: install it with "
                              "pip install 'ctrlprop[progress]' (or pip install tqdm), or "
                              "pass progress=False") from None
        self.bar = tqdm(total=total, desc=f"ctrlprop.{desc}", unit=unit, leave=True,
                        dynamic_ncols=True, mininterval=0.2)

    def update(self, n=1, **postfix):
        """Advance by n and show ``postfix`` (e.g. ``fun=...``) on the line."""
        if self.bar is None:
            return
        if postfix:
            self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                  for k, v in postfix.items()}, refresh=False)
        self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
