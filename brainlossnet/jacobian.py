"""Local volume change of a displacement field: the determinant of its Jacobian.

A field in the package's "pull-back" convention, ``warped(x) = moving(x + u(x))``,
defines the map ``phi(x) = x + u(x)`` from the fixed grid into the moving image. Its
Jacobian determinant ``det(I + grad u)`` is the volume of moving-image tissue that a
unit volume of the fixed image is drawn from, so the fixed/moving volume ratio at ``x``
is ``1 / det``: for the forward field (moving = BL, fixed = FU) a determinant above 1
means tissue that shrank from BL to FU. Summed over a mask this is exactly what the
warped-mask volumes of Eqs. 1-2 measure, here shown voxel by voxel for quality control.
"""

from __future__ import annotations

import numpy as np


def jacobian_determinant(displacement_vox: np.ndarray) -> np.ndarray:
    """``det(I + grad u)`` of a displacement field in voxel units, at every voxel.

    Parameters
    ----------
    displacement_vox : numpy.ndarray
        Shape (3, X, Y, Z): displacement along the array axes, in voxels (so the
        derivative is dimensionless whatever the voxel size).

    Returns
    -------
    numpy.ndarray
        float32 (X, Y, Z). 1 where the field is a pure translation; values <= 0 mark
        folding (a non-invertible map). Derivatives are central differences inside
        and one-sided on the faces (:func:`numpy.gradient`); an axis of length 1 has
        zero derivative.

    Raises
    ------
    ValueError
        If the array is not (3, X, Y, Z).
    """
    field = np.asarray(displacement_vox, dtype=np.float32)
    if field.ndim != 4 or field.shape[0] != 3:
        raise ValueError(f"displacement must have shape (3, X, Y, Z), got {field.shape}")
    # jac[i][j] = d phi_i / d x_j = delta_ij + d u_i / d x_j
    jac = [[_derivative(field[i], j) + (1.0 if i == j else 0.0) for j in range(3)] for i in range(3)]
    det = (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )
    return det.astype(np.float32, copy=False)


def _derivative(component: np.ndarray, axis: int) -> np.ndarray:
    if component.shape[axis] < 2:
        return np.zeros_like(component)
    return np.gradient(component, axis=axis)
