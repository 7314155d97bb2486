"""Powder-diffraction series for ``benchmarks/spectra.py --physics``, made
independently of ``server_ext.spectra.synthetic`` (written without reading
it), so that the classifier is also measured on data whose generator it
was not developed against (numpy only).

Each scenario returns a dict with keys
    X (n_spectra x n_points float64 counts), y (int labels, series order), axis (2theta deg,
    or d-spacing for "d_spacing"), q (4 pi sin(theta)/lambda, 1/A), variable (T in K or P in GPa),
    fraction (n_spectra x k phase fractions), name, plus wavelength and axis_unit.
Physics: structure factors from atom positions with f = Z exp(-a s^2) form factors, isotropic
Debye-Waller exp(-B s^2) with B ~ T, all hkl of a box kept separately (non-cubic splitting is
automatic) and merged only when d is identical, Lorentz-polarisation, pseudo-Voigt (Thompson-
Cox-Hastings) with Caglioti U,V,W + Scherrer size + microstrain broadening, Chebyshev background
with an amorphous hump and low-angle air scatter that drift along the series, per-spectrum
flux jitter and Poisson counting noise.
"""
import numpy as np

# element: (Z, form-factor width a [A^2] in f = Z exp(-a s^2), isotropic B at 300 K [A^2])
ELEMENTS = {"Ba": (56, 2.4, 0.45), "Ti": (22, 3.3, 0.40), "O": (8, 5.0, 0.60),
            "Ca": (20, 3.3, 0.45), "Cu": (29, 2.7, 0.70), "Au": (79, 2.2, 0.55),
            "Ce": (58, 2.3, 0.35)}
FCC = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
INSTRUMENT = dict(U=0.004, V=-0.0012, W=0.0012, pol=0.9)   # Caglioti in deg^2; pol=0.5 -> unpolarised


# ----------------------------------------------------------------------------- axes
def two_theta_axis(n_points=4020, tth_min=2.0, tth_max=40.0):
    return np.linspace(tth_min, tth_max, int(n_points), dtype=np.float64)


def q_from_tth(tth, wavelength):
    return 4.0 * np.pi * np.sin(np.radians(np.asarray(tth, float)) / 2.0) / wavelength


def d_from_tth(tth, wavelength):
    return wavelength / (2.0 * np.sin(np.radians(np.asarray(tth, float)) / 2.0))


def bragg_tth(d, wavelength):
    return 2.0 * np.degrees(np.arcsin(wavelength / (2.0 * np.asarray(d, float))))


# ----------------------------------------------------------------------------- crystallography
def _hkl_box(hmax):
    r = np.arange(-hmax, hmax + 1)
    h = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return h[np.any(h != 0, axis=1)]


def _f_atom(el, s2, T):
    Z, a, B300 = ELEMENTS[el]
    B = B300 * (0.1 + 0.9 * T / 300.0)        # high-T Debye limit (B ~ T) plus a zero-point part
    return Z * np.exp(-(a + B) * s2)


def reflections(cell, atoms, wavelength, tth_max, T=300.0, pol=0.9):
    """Bragg peaks of an orthogonal cell (a, b, c) [A]; atoms = [(element, (x, y, z), occupancy)].
    Returns 2theta [deg] and integrated intensities  m |F|^2 LP / V^2  (volume-normalised)."""
    a = np.asarray(cell, float)
    d_min = wavelength / (2.0 * np.sin(np.radians(tth_max) / 2.0))
    hkl = _hkl_box(int(np.ceil(a.max() / d_min)))
    inv_d2 = ((hkl / a) ** 2).sum(1)
    ok = inv_d2 <= 1.0 / d_min ** 2
    hkl, inv_d2 = hkl[ok], inv_d2[ok]
    s2 = inv_d2 / 4.0                                            # s = sin(theta)/lambda = 1/(2d)
    F = np.zeros(len(hkl), complex)
    for el, xyz, occ in atoms:
        F += occ * _f_atom(el, s2, T) * np.exp(2j * np.pi * (hkl @ np.asarray(xyz, float)))
    d_u, inv = np.unique(np.round(1.0 / np.sqrt(inv_d2), 7), return_inverse=True)
    I = np.bincount(inv, weights=np.abs(F) ** 2)                 # multiplicity = number of hkl summed
    th = np.arcsin(wavelength / (2.0 * d_u))
    lp = (pol + (1.0 - pol) * np.cos(2 * th) ** 2) / (np.sin(th) ** 2 * np.cos(th))
    keep = I > 1e-7 * I.max()
    return np.degrees(2 * th)[keep], (I * lp)[keep] / np.prod(a) ** 2


def profile_sum(tth, pos, area, wavelength, U, V, W, size_nm=100.0, strain=0.0, **_):
    """Sum of unit-area pseudo-Voigt peaks (TCH mixing of Gaussian/Lorentzian widths)."""
    th = np.radians(pos / 2.0)
    t = np.tan(th)
    HG = np.sqrt(np.maximum(U * t * t + V * t + W, 1e-8) + np.degrees(4.0 * strain * t) ** 2)
    HL = np.degrees(0.9 * wavelength / (size_nm * 10.0 * np.cos(th)))          # Scherrer
    H = (HG**5 + 2.69269 * HG**4 * HL + 2.42843 * HG**3 * HL**2 + 4.47163 * HG**2 * HL**3
         + 0.07842 * HG * HL**4 + HL**5) ** 0.2
    r = HL / H
    eta = 1.36603 * r - 0.47719 * r**2 + 0.11116 * r**3
    x2 = ((tth[None, :] - pos[:, None]) / H[:, None]) ** 2
    G = np.sqrt(4 * np.log(2) / np.pi) / H[:, None] * np.exp(-4 * np.log(2) * x2)
    L = 2.0 / (np.pi * H[:, None]) / (1.0 + 4.0 * x2)
    return (area[:, None] * (eta[:, None] * L + (1 - eta[:, None]) * G)).sum(0)


def bm_compression(P, K0, K1):
    """V/V0 from the 3rd-order Birch-Murnaghan EOS at pressure P (GPa), vectorised bisection."""
    P = np.atleast_1d(np.asarray(P, float))
    lo, hi = np.full(P.shape, 0.3), np.ones(P.shape)
    for _ in range(60):
        x = 0.5 * (lo + hi)
        y = x ** (-2.0 / 3.0)
        Px = 1.5 * K0 * (y ** 3.5 - y ** 2.5) * (1 + 0.75 * (K1 - 4) * (y - 1))
        lo, hi = np.where(Px > P, x, lo), np.where(Px > P, hi, x)
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- series engine
def phase_fractions(t, t_c, width=0.03):
    """Sequential transitions at progress values t_c; 10-90 % coexistence over `width` of the series."""
    w = width / (2 * np.log(9.0))
    s = 0.5 * (1 + np.tanh((t[:, None] - np.sort(np.asarray(t_c, float))[None, :]) / (2 * w)))
    s = np.hstack([np.ones((len(t), 1)), s, np.zeros((len(t), 1))])
    return s[:, :-1] - s[:, 1:]


def _background(rng, tth, t, wavelength, level):
    x = 2 * (tth - tth.min()) / (tth.max() - tth.min()) - 1
    c0 = np.array([1.0, -0.25, 0.08, -0.03]) + rng.normal(0, [0, 0.05, 0.03, 0.01])
    dc = rng.normal(0, [0.04, 0.03, 0.015, 0.005])                      # linear drift along series
    q_h, dq_h = rng.uniform(1.4, 2.0), rng.uniform(0.5, 0.8)            # amorphous hump in q
    hc = bragg_tth(2 * np.pi / q_h, wavelength)
    hw = bragg_tth(2 * np.pi / (q_h + dq_h / 2), wavelength) - hc
    amp, damp, air = rng.uniform(0.3, 0.6), rng.uniform(-0.15, 0.15), rng.uniform(0.3, 0.8)
    f, ph = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    out = np.empty((len(t), len(tth)))
    for i, ti in enumerate(t):
        b = np.polynomial.chebyshev.chebval(x, c0 + dc * ti)
        b += amp * (1 + damp * ti) * np.exp(-0.5 * ((tth - hc) / hw) ** 2)
        b += air * np.exp(-(tth - tth.min()) / 2.5)
        out[i] = level * np.maximum(b, 0.05) * (1 + 0.02 * np.sin(2 * np.pi * f * ti + ph))
    return out


def simulate_series(rng, t, variable, fractions, phase_fn, tth, wavelength, peak_counts=2e4,
                    bg_frac=0.05, flux_var=0.07, noise=True, instrument=None):
    """phase_fn(k, variable, t) -> dict(cell, atoms, T, size, strain) for class k."""
    inst = dict(INSTRUMENT if instrument is None else instrument)
    zero = rng.normal(0, 0.003)                                  # 2theta zero offset (deg)
    clean = np.zeros((len(t), len(tth)))
    for i in range(len(t)):
        for k in range(fractions.shape[1]):
            if fractions[i, k] < 1e-4:
                continue
            ph = phase_fn(k, variable[i], t[i])
            pos, I = reflections(ph["cell"], ph["atoms"], wavelength, tth.max() + 0.5, ph["T"], inst["pol"])
            clean[i] += fractions[i, k] * profile_sum(tth - zero, pos, I, wavelength, size_nm=ph["size"],
                                                      strain=ph["strain"], **inst)
    clean *= peak_counts / clean[0].max()
    lam = clean + _background(rng, tth, t, wavelength, bg_frac * peak_counts)
    lam *= 1 + rng.uniform(-flux_var, flux_var, len(t))[:, None]
    return rng.poisson(lam).astype(np.float64) if noise else lam


def _pack(name, X, frac, tth, wavelength, variable, unit="2theta_deg"):
    return dict(X=X, y=np.argmax(frac, 1).astype(int), axis=tth, q=q_from_tth(tth, wavelength),
                variable=np.asarray(variable, float), fraction=frac, name=name,
                wavelength=wavelength, axis_unit=unit)


def _perovskite_atoms(u=0.0):
    # BaTiO3 P4mm (Ba origin): Ti off-centre +u along c, O displaced the other way (Kwei 1993-like)
    return [("Ba", (0, 0, 0), 1), ("Ti", (.5, .5, .5 + u), 1), ("O", (.5, .5, -0.9 * u), 1),
            ("O", (.5, 0, .5 - 0.83 * u), 1), ("O", (0, .5, .5 - 0.83 * u), 1)]


# ----------------------------------------------------------------------------- scenarios
def perovskite_heating(random_state=0, n_points=4020, n_spectra=360, wavelength=0.7, **kw):
    """0: tetragonal BaTiO3-like (c/a 1.015 -> 1.010), 1: cubic, 2: cubic with a 1 % larger cell."""
    rng = np.random.default_rng(random_state)
    t = np.linspace(0, 1, n_spectra)
    T = 300 + 700 * t
    tc = np.array([1 / 3, 2 / 3]) + rng.uniform(-0.02, 0.02, 2)
    frac = phase_fractions(t, tc, kw.pop("coexist", 0.03))
    alpha, size = rng.uniform(1.2e-5, 1.8e-5), rng.uniform(80, 150)
    Tc1 = 300 + 700 * tc[0]

    def phase(k, T_, t_):
        ac = 4.000 * (1 + alpha * (T_ - 300))                  # pseudo-cubic a (volume conserved)
        if k == 0:
            delta = 0.015 - 0.005 * np.clip((T_ - 300) / (Tc1 - 300), 0, 1)
            a_ = ac / (1 + delta) ** (1 / 3)
            return dict(cell=(a_, a_, a_ * (1 + delta)), T=T_, size=size, strain=3e-4,
                        atoms=_perovskite_atoms(0.018 * np.sqrt(delta / 0.015)))
        a_ = ac * (1.01 if k == 2 else 1.0)
        return dict(cell=(a_,) * 3, atoms=_perovskite_atoms(0.0), T=T_, size=size, strain=2e-4)

    X = simulate_series(rng, t, T, frac, phase, two_theta_axis(n_points), wavelength, **kw)
    return _pack("perovskite_heating", X, frac, two_theta_axis(n_points), wavelength, T)


def pressure_b1_b2(random_state=0, n_points=4020, n_spectra=280, wavelength=0.6, **kw):
    """0: rock-salt (B1, CaO-like) compressing with BM3, 1: CsCl (B2), ~9 % volume collapse."""
    rng = np.random.default_rng(random_state)
    t = np.linspace(0, 1, n_spectra)
    P = 40.0 * t
    tc = 0.5 + rng.uniform(-0.03, 0.03)
    frac = phase_fractions(t, [tc], kw.pop("coexist", 0.03))
    K_b1, K_b2 = rng.uniform(105, 125), rng.uniform(125, 150)
    V0_b1 = 4.811 ** 3 / 4                                     # per formula unit
    V_b2_at_Pt = 0.91 * V0_b1 * bm_compression(40 * tc, K_b1, 4.2)[0]
    V0_b2 = V_b2_at_Pt / bm_compression(40 * tc, K_b2, 4.0)[0]

    def phase(k, P_, t_):
        strain = 2e-4 + 4e-5 * P_                              # non-hydrostatic microstrain
        if k == 0:
            a_ = (4 * V0_b1 * bm_compression(P_, K_b1, 4.2)[0]) ** (1 / 3)
            atoms = [("Ca", p, 1) for p in FCC] + [("O", p + [.5, 0, 0], 1) for p in FCC]
            return dict(cell=(a_,) * 3, atoms=atoms, T=300.0, size=150.0, strain=strain)
        a_ = (V0_b2 * bm_compression(P_, K_b2, 4.0)[0]) ** (1 / 3)
        return dict(cell=(a_,) * 3, atoms=[("Ca", (0, 0, 0), 1), ("O", (.5, .5, .5), 1)],
                    T=300.0, size=40.0, strain=strain)         # new phase: small domains

    kw.setdefault("bg_frac", 0.12)
    X = simulate_series(rng, t, P, frac, phase, two_theta_axis(n_points), wavelength, **kw)
    return _pack("pressure_b1_b2", X, frac, two_theta_axis(n_points), wavelength, P)


def _cu3au_atoms(S):
    """L1_2 with long-range order parameter S (S=0: disordered A1 fcc)."""
    atoms = []
    for j, p in enumerate(FCC):
        x_au = 0.25 + 0.75 * S if j == 0 else 0.25 - 0.25 * S
        atoms += [("Au", p, x_au), ("Cu", p, 1 - x_au)]
    return atoms


def superlattice(random_state=0, n_points=4020, n_spectra=360, wavelength=0.7, order_S=0.4, **kw):
    """Cooling 800 -> 350 K.  0: disordered fcc (Cu3Au-like A1), 1: L1_2-ordered cubic (weak
    (100),(110),... superlattice peaks, same cell), 2: ordered + tetragonal c/a = 1.005."""
    rng = np.random.default_rng(random_state)
    t = np.linspace(0, 1, n_spectra)
    T = 800 - 450 * t
    tc = np.array([1 / 3, 2 / 3]) + rng.uniform(-0.02, 0.02, 2)
    frac = phase_fractions(t, tc, kw.pop("coexist", 0.03))
    alpha, size = rng.uniform(1.3e-5, 1.7e-5), rng.uniform(80, 150)

    def phase(k, T_, t_):
        a_ = 3.749 * (1 + alpha * (T_ - 300))
        S = 0.0 if k == 0 else order_S * (0.85 + 0.15 * np.clip((t_ - tc[0]) / (1 - tc[0]), 0, 1))
        cell = (a_,) * 3 if k < 2 else (a_ / 1.005 ** (1 / 3),) * 2 + (a_ * 1.005 ** (2 / 3),)
        return dict(cell=cell, atoms=_cu3au_atoms(S), T=T_, size=size, strain=2e-4)

    X = simulate_series(rng, t, T, frac, phase, two_theta_axis(n_points), wavelength, **kw)
    return _pack("superlattice", X, frac, two_theta_axis(n_points), wavelength, T)


def isostructural_shift(random_state=0, n_points=4020, n_spectra=360, wavelength=0.7, **kw):
    """4 fluorite (CeO2-like) classes A, A', A'', A''': a_k = a0 * 1.008^k, heating 300 -> 900 K
    with thermal drift inside each class ~ 1/3 of the 0.8 % step."""
    rng = np.random.default_rng(random_state)
    t = np.linspace(0, 1, n_spectra)
    T = 300 + 600 * t
    tc = np.array([0.25, 0.5, 0.75]) + rng.uniform(-0.01, 0.01, 3)
    frac = phase_fractions(t, tc, kw.pop("coexist", 0.03))
    alpha = (0.008 / 3) / (600 / 4)                            # ~1.8e-5 /K
    size = rng.uniform(80, 150)
    atoms = ([("Ce", p, 1) for p in FCC] + [("O", p + .25, 1) for p in FCC]
             + [("O", p + .75, 1) for p in FCC])

    def phase(k, T_, t_):
        a_ = 5.411 * 1.008 ** k * (1 + alpha * (T_ - 300))
        return dict(cell=(a_,) * 3, atoms=atoms, T=T_, size=size, strain=2e-4)

    X = simulate_series(rng, t, T, frac, phase, two_theta_axis(n_points), wavelength, **kw)
    return _pack("isostructural_shift", X, frac, two_theta_axis(n_points), wavelength, T)


def d_spacing(random_state=0, n_points=4020, n_spectra=360, wavelength=0.7, **kw):
    """Scenario `superlattice` with the axis given as d = lambda/(2 sin theta) (decreasing)."""
    out = superlattice(random_state, n_points, n_spectra, wavelength, **kw)
    out.update(name="d_spacing", axis=d_from_tth(out["axis"], wavelength), axis_unit="d_A")
    return out


SCENARIOS = {f.__name__: f for f in (perovskite_heating, pressure_b1_b2, superlattice,
                                     isostructural_shift, d_spacing)}

if __name__ == "__main__":
    for name, fn in SCENARIOS.items():
        d = fn(random_state=0)
        X, y = d["X"], d["y"]
        print(f"{name:20s} X{X.shape} classes {np.bincount(y).tolist()} "
              f"counts {X.min():.0f}-{X.max():.0f} axis {d['axis'][0]:.3f}..{d['axis'][-1]:.3f} "
              f"{d['axis_unit']}, variable {d['variable'][0]:.1f}..{d['variable'][-1]:.1f}")
