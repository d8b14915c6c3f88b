"""numba kernel of :func:`ctrlprop.solvers.lbfgsb.lbfgsb` (loaded through
:func:`ctrlprop.core.compiled.extension`, only when the extra ``ctrlprop[fast]`` is
installed and the compiled path is on).

:func:`search_direction` is :func:`ctrlprop.solvers.lbfgsb.search_direction` compiled: the
same source, one description of the method.  For 30 variables and 10 pairs an iteration's
direction costs about 20 us compiled against about 150 us on numpy (measured by
``benchmarks/bench_mpc.py``'s second table).  ``test_lbfgsb`` runs on both paths and
compares the two.
"""

import numba

from .lbfgsb import search_direction as _python_source

search_direction = numba.njit(cache=True, nogil=True, error_model="numpy")(_python_source)
