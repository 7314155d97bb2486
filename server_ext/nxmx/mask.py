"""EuXFEL bad-pixel bits -> NXmx ``pixel_mask`` bits.

EuXFEL corrected data carry a per-frame ``mask`` whose bits are the
calibration pipeline's ``BadPixels`` flags; NXmx defines its own bits
(bit 0 gap, 1 dead, 2 under-responding, 3 over-responding, 4 noisy, 6 part
of a cluster, 8 user mask, 31 virtual pixel).
"""

import numpy as np

NX_GAP, NX_DEAD, NX_UNDER, NX_OVER, NX_NOISY = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
NX_CLUSTER, NX_USER, NX_VIRTUAL = 1 << 6, 1 << 8, 1 << 31

# EuXFEL BadPixels bit -> NXmx bits (cal_tools.enums.BadPixels).
EUXFEL_TO_NXMX = {
    0: NX_DEAD,      # OFFSET_OUT_OF_THRESHOLD
    1: NX_NOISY,     # NOISE_OUT_OF_THRESHOLD
    2: NX_DEAD,      # OFFSET_NOISE_EVAL_ERROR
    3: NX_DEAD,      # NO_DARK_DATA
    4: NX_UNDER,     # CI_GAIN_OUT_OF_THRESHOLD
    5: NX_OVER,      # CI_LINEAR_DEVIATION
    6: NX_DEAD,      # CI_EVAL_ERROR
    7: NX_DEAD,      # FF_GAIN_EVAL_ERROR
    8: NX_UNDER,     # FF_GAIN_DEVIATION
    9: NX_DEAD,      # FF_NO_ENTRIES
    10: NX_DEAD,     # CI2_EVAL_ERROR
    11: NX_DEAD,     # VALUE_IS_NAN
    12: NX_OVER,     # VALUE_OUT_OF_RANGE
    13: NX_OVER,     # GAIN_THRESHOLDING_ERROR
    14: NX_DEAD,     # DATA_STD_IS_ZERO
    15: NX_UNDER,    # ASIC_STD_BELOW_NOISE
    16: NX_VIRTUAL,  # INTERPOLATED
    17: NX_NOISY,    # NOISY_ADC
    18: NX_GAP,      # OVERSCAN
    19: NX_GAP,      # NON_SENSITIVE
    20: NX_OVER,     # NON_LIN_RESPONSE_REGION
    21: NX_DEAD,     # WRONG_GAIN_VALUE
    22: NX_GAP,      # NON_STANDARD_SIZE
}


def translate_mask(euxfel_mask):
    """Translate an EuXFEL bad-pixel array to NXmx ``pixel_mask`` (uint32)."""
    m = np.asarray(euxfel_mask, dtype=np.uint32)
    out = np.zeros(m.shape, np.uint32)
    for bit, nx in EUXFEL_TO_NXMX.items():
        out[(m & np.uint32(1 << bit)) != 0] |= np.uint32(nx)
    # Bits EuXFEL may add later still mark the pixel as bad, not as good.
    known = np.uint32(sum(1 << b for b in EUXFEL_TO_NXMX))
    out[(m & ~known) != 0] |= np.uint32(NX_DEAD)
    return out
