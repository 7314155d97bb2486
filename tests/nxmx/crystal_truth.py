"""Compare what DIALS found with the simulated truth (any cell, any orientation)."""

import numpy as np

# dxtbx's lab frame is McStas turned 180° about y (dxtbx.nexus.MCSTAS_TO_IMGCIF).
MCSTAS_TO_DXTBX = np.diag([-1.0, 1.0, -1.0])


def misorientation_deg(A_true_mcstas, A_found_dxtbx):
    """Angle (°) of the rotation taking the true lattice onto the found one,
    after the re-indexing (an integer matrix) that maps one basis onto the
    other; None when the found lattice is not a re-indexed true lattice."""
    A_true = MCSTAS_TO_DXTBX @ np.asarray(A_true_mcstas)
    A_found = np.asarray(A_found_dxtbx, dtype=float).reshape(3, 3)
    M = np.linalg.solve(A_true, A_found)
    M_int = np.rint(M)
    if np.abs(M - M_int).max() > 0.1 or round(abs(np.linalg.det(M_int))) != 1:
        return None
    R = A_found @ np.linalg.inv(A_true @ M_int)
    # R is a rotation up to refinement noise: its polar part.
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def relative_cell_error(true_cell, found_cell):
    """Largest relative deviation of a, b, c and of the angles."""
    t, f = np.asarray(true_cell, float), np.asarray(found_cell, float)
    return float(np.max(np.abs(f - t) / t))
