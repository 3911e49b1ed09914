"""EISMINT I isothermal benchmarks: Huybrechts, Payne et al. (1996), Ann. Glaciol. 23, 1-12.

31 x 31 cells at 50 km on a flat bed, n = 3, A = 1e-16 Pa^-3 a^-1, from zero ice for 200 ka,
H = 0 on the boundary ring. Peer figures (OGGM ``Upstream2D`` run on the same setup,
reference/VERIFICATION.md): divide 3380 m (fixed margin), 2974 m (moving margin). The
plane-flow Vialov profile bounds the fixed-margin divide from above: 3575 m.

Measured here (float64, CPU): moving 2982.2 m (+0.27 % vs the peer), fixed 3374.8 m
(-0.16 %); both volumes unchanged to round-off over the last 10 ka.
"""

import numpy as np
import pytest

from glacier.domains import build_domain
from glacier.solver import save_times

from ._helpers import budget_residual, run_domain

CASES = {
    "eismint_moving": dict(peer=2974.0, upper=None),
    "eismint_fixed": dict(peer=3380.0, upper=3575.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_eismint_divide_and_steady_state(name):
    domain = build_domain(name)
    result = run_domain(domain, save_times(200_000.0, 10_000.0))
    c = domain.grid.ny // 2
    divide = float(result.thickness[-1, c, c])
    peer = CASES[name]["peer"]
    assert abs(divide / peer - 1.0) <= 0.02, f"{name}: divide {divide:.1f} m vs peer {peer} m"
    upper = CASES[name]["upper"]
    if upper is not None:
        assert divide < upper, f"{name}: divide {divide:.1f} m above the Vialov bound {upper} m"
    change = abs(result.volume[-1] - result.volume[-2]) / result.volume[-1]
    assert change < 1e-4, f"{name}: volume changed by {change:.2e} over the last 10 ka"
    H = result.thickness[-1]
    assert result.thickness.min() >= 0.0
    # The ice sheet is symmetric under the square's symmetries (mirror and transpose).
    scale = H.max()
    for image in (H[::-1], H[:, ::-1], H.T):
        assert np.abs(image - H).max() <= 1e-9 * scale
    # The boundary ring stays empty and the budget (with ring removal as outflow) closes.
    assert np.all(H[0] == 0) and np.all(H[-1] == 0) and np.all(H[:, 0] == 0)
    assert np.all(H[:, -1] == 0)
    assert budget_residual(result).max() <= 1e-9
