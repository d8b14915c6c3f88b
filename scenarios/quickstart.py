"""Quickstart: a DAG network, its gradients, and the lecture's last point -- optimise the controls.

    python scenarios/quickstart.py

Builds a small network with a skip connection, checks its back-propagated
gradients against finite differences, then freezes the weights and uses the
same backward pass (kept at the input units) to find the control input u that
drives the output to a target, with scipy.optimize.minimize.
"""

import numpy as np
from scipy.optimize import minimize

import ctrlprop as cp


def main():
    # units 0, 1: inputs (0 = context x, 1 = control u); 2, 3: tanh; 4: linear output
    net = cp.Network.from_edges(2, [(0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (1, 4)],
                                ["tanh", "tanh", "linear"], outputs=[4], seed=3)
    print(net.describe())
    X = np.random.default_rng(0).standard_normal((5, 2))
    print("gradient check:", cp.check_gradients(net, X))

    x, target = 0.3, 0.5
    # E(u) = 1/2 (y* - y(x, u))^2 ; dE/du is the delta of input unit 1

    def objective(u):
        tr = net.trace([x, u[0]])
        r = tr.outputs() - target
        return 0.5 * float(r @ r), tr.backward(r, wrt="inputs")[1:]

    res = minimize(objective, x0=[0.0], jac=True, method="L-BFGS-B", bounds=[(-3, 3)])
    y = net.forward([x, res.x[0]])[0]
    print(f"control u = {res.x[0]:+.5f}  ->  output {y:+.6f} (target {target}), "
          f"{res.nit} iterations, success={res.success}")


if __name__ == "__main__":
    main()
