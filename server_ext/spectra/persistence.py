"""Saving and loading a fitted ``BinnedSpectraClassifier``.

A model is a directory: ``config.json`` (format name and version, the
estimator's parameters, classes, preprocessing), ``arrays.npz`` (NumPy, no
pickle: bins, weights, the fused networks) and one ``binNN.keras`` file per
bin network. It is written under a temporary name and renamed into place.
Loading needs neither TensorFlow nor Keras: the fused inference is rebuilt
from ``arrays.npz``; the Keras models load on first use of ``bin_models_``.

Format versions: 1 left a tail of points out of the segments; 2 covers
every point; 3 renames the parameter ``n_features`` to ``segments_per_bin``
and stores ``position_scale_`` (the learnt per-class strain/shift
augmentation scale); 4 stores the strain alignment where the model has one
(``align_grid``, ``align_templates``, ``align_positions``, ``align_used``;
see :mod:`.align`); 5 stores what ``fit`` found besides the networks
(``position_pairs_`` in ``config.json``; ``label_targets_``,
``class_scales_`` and ``alignment_evidence_`` in ``arrays.npz``), which
models read from earlier versions report as None; 6 allows
``segments_per_bin="auto"`` (the count used, ``segments_per_bin_``, is
the width of the stored bins' ``segments``), which version 5 readers
would refuse as a parameter; 7 adds the parameter ``local_strain`` (a
training parameter: models read from earlier versions were fitted
without it, and report 0); 8 adds ``split_variation`` (the same way);
9 adds ``fixed_ranges`` (models read from earlier versions had none
declared, the default); within 9, ``bad_pixels_`` (the hot and dead pixels
found in the labelled spectra, in ``config.json``) was added after the
first models were saved, which report None like those before version 5;
10 bridges ``bad_pixels_`` in every spectrum (see :mod:`.preprocess`):
version 9 readers would classify such a model's spectra with the pixels
in, and version 9 models read now are not bridged; it also stores
``spikes_`` (None for models before it); 11 bridges ``masked_points_``
too (the points no labelled spectrum reads; None for models before it,
which ``fit`` refused); within 11, ``noise_offset_`` (what the copies'
noise was measured with; training only) was added after the first
models were saved, which report None, and ``bridged``: the points the
model bridges, as it classified when saved -- a version 9 model read and
saved again still leaves its pixels in (its bad pixels and masked points
would say otherwise), and points added by ``mask_points`` are bridged
again; models saved before it bridge what their version says; and
``axis_`` (the positions fitted with, in ``arrays.npz``; None for models
saved before it, which classify spectra on their own points only), and
``trained_on`` (where the labelled spectra came from, as the caller of
``save`` said: ``daas spectra train`` and the server's training jobs say
it; None for models saved before it or without it).
Version 2 and 3 models are read (2: the parameter renamed) and classify as
before, without alignment (``align_strain=False``, what they were fitted
with: the default is now "auto"). Parameters added within a version
(``learn_mixtures``, ``denoise_below`` in 3) take their defaults when a
model saved before them is read; they change training only, not what is
saved.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import zipfile
import zlib

import numpy as np

from .align import StrainAligner
from .augment import increasing_axis
from .errors import SpectraError
from .fused import FusedVote
from .preprocess import SegmentPreprocessor

__all__ = ["save_classifier", "load_classifier", "FORMAT", "VERSION"]

FORMAT = "daas-spectra-classifier"
VERSION = 11
_READABLE = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
#: fitted attributes stored as arrays
_ARRAYS = ("bins_", "separability_", "weights_", "published_weights_", "candidates_",
           "candidate_separability_")
#: what ``fit`` found, stored from format 5 where the model has it (None
#: is not stored: ``class_scales_``, ``alignment_evidence_`` may be None)
_FINDINGS = ("label_targets_", "class_scales_", "alignment_evidence_")


def _plain(value):
    """``value`` with NumPy scalars and tuples as JSON's own types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _axis(arrays, n_points):
    """The positions the model was fitted with, or None (see module doc)."""
    if "axis_" not in arrays:
        return None
    axis = np.asarray(arrays["axis_"], np.float64)
    increasing_axis(axis, n_points)  # refused as fit refuses it: the model is corrupt
    return axis


def _bridged(config, clf) -> np.ndarray:
    """The points the model bridges: as saved (``bridged``, within 11), or
    as its version bridged them."""
    if config.get("bridged") is not None:
        points = np.asarray(config["bridged"], np.intp).reshape(-1)
        if points.size and not 0 <= points.min() <= points.max() < int(config["n_points"]):
            raise ValueError(f"bridged {points.tolist()} lie outside the model's "
                             f"{config['n_points']} points")
        if clf.masked_points_ is not None and not np.isin(clf.masked_points_, points).all():
            raise ValueError("masked points that are not bridged")  # NaN would be read
        return points
    found = [p for p in (clf.bad_pixels_ if config["version"] >= 10 else None,
                         clf.masked_points_) if p is not None]
    return np.concatenate([np.zeros(0, np.intp), *found])


def _findings(config, arrays, n_classes):
    """``{attribute: value}`` of what ``fit`` found (format 5; before it,
    all None), each checked against the number of classes (the bad
    pixels and masked points: of points)."""
    found = dict.fromkeys(("position_pairs_", "bad_pixels_", "masked_points_", "spikes_",
                           "noise_offset_") + _FINDINGS)
    if config["version"] < 5:
        return found
    pairs = config.get("position_pairs")
    found["position_pairs_"] = None if pairs is None else [
        {**p, "classes": tuple(int(c) for c in p["classes"])} for p in pairs]
    for name in ("bad_pixels", "masked_points"):
        if config.get(name) is not None:
            points = found[name + "_"] = np.asarray(config[name], np.intp).reshape(-1)
            if points.size and not 0 <= points.min() <= points.max() < int(config["n_points"]):
                raise ValueError(f"{name} {points.tolist()} lie outside the model's "
                                 f"{config['n_points']} points")
    if config.get("spikes") is not None:
        spikes = config["spikes"]
        if not isinstance(spikes, int) or isinstance(spikes, bool) or spikes < 0:
            raise ValueError(f"spikes must be a count, not {spikes!r}")
        found["spikes_"] = spikes
    if config.get("noise_offset") is not None:
        offset = config["noise_offset"]
        if not isinstance(offset, (int, float)) or isinstance(offset, bool) or not (
                np.isfinite(offset) and offset >= 0):
            raise ValueError(f"noise_offset must be a count >= 0, not {offset!r}")
        found["noise_offset_"] = float(offset)
    found.update({k: arrays[k] for k in _FINDINGS if k in arrays})
    shapes = {"label_targets_": lambda a: a.ndim == 2 and a.shape[1] == n_classes,
              "class_scales_": lambda a: a.shape == (n_classes,),
              "alignment_evidence_": lambda a: a.shape == (2, n_classes, n_classes)}
    for k, agrees in shapes.items():
        if found[k] is not None and not agrees(found[k]):
            raise ValueError(f"{k} has shape {found[k].shape} for {n_classes} classes")
    if found["alignment_evidence_"] is not None:
        found["alignment_evidence_"] = tuple(found["alignment_evidence_"])
    return found


def _keras_file(b):
    return f"bin{b:02d}.keras"


def save_classifier(clf, path, overwrite=False) -> pathlib.Path:
    """Write the fitted ``clf`` to the directory ``path`` (see module doc)."""
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise SpectraError(f"{path} exists; choose another path or pass overwrite=True")
    models = clf.bin_models_
    config = {
        "format": FORMAT, "version": VERSION, "params": clf.get_params(),
        "classes": clf.classes_.tolist(), "classes_dtype": clf.classes_.dtype.str,
        "n_points": int(clf.n_features_in_), "preprocessor": clf._prep.config(),
        "beta": float(clf.beta_), "position_pairs": _plain(clf.position_pairs_),
        "bad_pixels": None if clf.bad_pixels_ is None else clf.bad_pixels_.tolist(),
        "masked_points": None if clf.masked_points_ is None else clf.masked_points_.tolist(),
        "spikes": clf.spikes_, "noise_offset": clf.noise_offset_,
        "bridged": clf._prep.bridged.tolist(),
        "trained_on": getattr(clf, "trained_on_", None),
    }
    arrays = {k: getattr(clf, k) for k in _ARRAYS}
    arrays.update({k: np.asarray(getattr(clf, k), np.float64) for k in _FINDINGS
                   if getattr(clf, k) is not None})
    f = clf._fused
    arrays.update(segments=f.segments, W1=f.W1, b1=f.b1[:, 0], W2=f.W2, b2=f.b2[:, 0],
                  position_scale_=clf.position_scale_)
    if clf.axis_ is not None:
        arrays["axis_"] = clf.axis_
    if clf._aligner is not None:
        a = clf._aligner
        arrays.update(align_grid=a.grid, align_templates=a.templates,
                      align_positions=a.positions, align_used=a.used)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        np.savez(tmp / "arrays.npz", **arrays)
        for b, m in enumerate(models):
            m.save(tmp / _keras_file(b))
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# what a damaged zip file raises (.npz and .keras are zip files): a copy cut
# short, a flipped bit (its CRC; NotImplementedError where the bit named a
# compression method that does not exist), an empty file
_DAMAGED_ZIP = (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError)


def _damaged(path, name, error) -> SpectraError:
    return SpectraError(f"the model directory {path} is incomplete or corrupt ({name} is damaged: "
                        f"{error}); save or train it again")


def _read(path):
    try:
        config = json.loads((path / "config.json").read_text())
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except _DAMAGED_ZIP as e:
        raise _damaged(path, "arrays.npz", e)
    except (OSError, ValueError, KeyError) as e:
        raise SpectraError(f"{path} is not a saved spectra classifier ({e}); "
                           "create one with BinnedSpectraClassifier.save or "
                           "'daas spectra train'")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise SpectraError(f"{path} is not a saved spectra classifier")
    if config.get("version") not in _READABLE:
        raise SpectraError(f"{path} was saved by another version of the spectra classifier "
                           f"(format version {config.get('version')}, this one reads "
                           f"{', '.join(map(str, _READABLE))}); train it again with "
                           "'daas spectra train'")
    if config["version"] == 2 and isinstance(config.get("params"), dict):
        params = dict(config["params"])
        if "n_features" in params:
            params["segments_per_bin"] = params.pop("n_features")
        config["params"] = params
    if config["version"] < 4 and isinstance(config.get("params"), dict):
        # before format 4 no model aligned: refitted, it does the same
        config["params"] = {"align_strain": False, **config["params"]}
    if config["version"] < 7 and isinstance(config.get("params"), dict):
        # fitted before the local strain existed: refitted, it does the same
        config["params"] = {"local_strain": 0.0, **config["params"]}
    if config["version"] < 8 and isinstance(config.get("params"), dict):
        # fitted before the splits varied: refitted, it does the same
        config["params"] = {"split_variation": 0.0, **config["params"]}
    return config, arrays


def _aligner_agrees(aligner, n_segments):
    if aligner is None:
        return True
    G = len(aligner.grid)
    return (aligner.grid.ndim == 1 and G >= 1 and aligner.positions.shape == (G, n_segments)
            and aligner.templates.ndim == 2 and aligner.templates.shape[1] % G == 0
            and aligner.templates.shape[0] == len(aligner.used)
            and (len(aligner.used) == 0 or (aligner.used.min() >= 0
                                             and aligner.used.max() < n_segments))
            and np.isfinite(aligner.positions).all())


def load_classifier(cls, path):
    """A ``cls`` instance restored from ``path`` (see module doc)."""
    path = pathlib.Path(path)
    config, arrays = _read(path)
    try:
        clf = cls(**config["params"])
        clf.classes_ = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
        clf.n_features_in_ = int(config["n_points"])
        for k in _ARRAYS:
            setattr(clf, k, arrays[k])
        clf.position_scale_ = arrays.get("position_scale_", np.ones(len(clf.classes_)))
        for k, v in _findings(config, arrays, len(clf.classes_)).items():
            setattr(clf, k, v)
        clf.axis_ = _axis(arrays, clf.n_features_in_)
        trained_on = config.get("trained_on")
        clf.trained_on_ = trained_on if isinstance(trained_on, dict) else None
        clf._prep = SegmentPreprocessor(**config["preprocessor"], bridged=_bridged(config, clf))
        clf._aligner = None
        if config["version"] >= 4 and "align_grid" in arrays:
            clf._aligner = StrainAligner(arrays["align_grid"], arrays["align_templates"],
                                         arrays["align_positions"], arrays["align_used"])
        clf.beta_ = float(config["beta"])
        clf._fused = FusedVote(arrays["segments"], arrays["W1"], arrays["b1"],
                               arrays["W2"], arrays["b2"], arrays["weights_"], clf.beta_)
        _, per_bin = clf._check_params(clf.n_features_in_)
        clf.segments_per_bin_ = int(clf._fused.segments.shape[1])
        n_bins = len(clf.bins_)
        shapes_agree = (len(clf._fused.W1) == len(clf.weights_) == n_bins
                        and clf.segments_per_bin_ == per_bin
                        and clf._fused.segments.max() < clf._prep.n_segments
                        and clf._fused.W2.shape[2] == len(clf.classes_)
                        and _aligner_agrees(clf._aligner, clf._prep.n_segments))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise SpectraError(f"the model directory {path} is incomplete or corrupt "
                           f"({type(e).__name__}: {e}); save or train it again")
    missing = [_keras_file(b) for b in range(n_bins) if not (path / _keras_file(b)).is_file()]
    if not shapes_agree or missing:
        what = f"missing {', '.join(missing)}" if missing else "arrays of different sizes"
        raise SpectraError(f"the model directory {path} is incomplete or corrupt ({what}); "
                           "save or train it again")
    clf._bin_models = None
    clf._model_dir = path
    return clf


def load_bin_models(model_dir, n_bins):
    """The per-bin Keras models saved in ``model_dir`` (imports TensorFlow)."""
    from .networks import keras_module

    keras = keras_module()
    models = []
    for b in range(n_bins):
        try:
            models.append(keras.models.load_model(pathlib.Path(model_dir) / _keras_file(b), compile=False))
        except (OSError, ValueError, KeyError, *_DAMAGED_ZIP) as e:  # KeyError: a member's name damaged
            raise _damaged(model_dir, _keras_file(b), e)
    return models
