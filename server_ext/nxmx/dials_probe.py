"""Run by DIALS' own interpreter (``/usr/bin/python3`` on Debian), never
imported by the project's environment: it imports dxtbx/DIALS, which need
their own numpy and boost.python runtime. ``server_ext.nxmx.dials`` starts
it in a subprocess and reads the JSON it writes.

    python3 dials_probe.py read FILE.nxs OUT.json [--arrays DIR] [--image K]
    python3 dials_probe.py summary WORKDIR OUT.json

``read``: what dxtbx makes of an NXmx file (format class, panels in dxtbx's
lab frame, beams per image, goniometer/scan); with ``--arrays`` also the
mask and the raw data of image K per panel (``DIR/mask.npy``,
``DIR/data.npy``, shape (panels, slow, fast)).
``summary``: spots and indexing results a DIALS run left in WORKDIR
(``imported.expt``, ``strong.refl``, ``indexed.expt``, ``indexed.refl``).
"""

import json
import os
import sys


def _vec(v):
    return [float(x) for x in v]


def read(path, out, arrays=None, image=0):
    import numpy as np
    from dxtbx.format.Registry import get_format_class_for_file
    from dxtbx.model.experiment_list import ExperimentListFactory

    fmt = get_format_class_for_file(path)
    experiments = ExperimentListFactory.from_filenames([path])
    # Stills: one experiment (and one single-image imageset) per image.
    images = [(expt.imageset, i) for expt in experiments for i in range(len(expt.imageset))]
    first = experiments[0] if len(experiments) else None
    detector = first.imageset.get_detector() if first else []
    panels = [{
        "name": p.get_name(),
        "origin_mm": _vec(p.get_origin()),
        "fast_axis": _vec(p.get_fast_axis()),
        "slow_axis": _vec(p.get_slow_axis()),
        "pixel_size_mm": _vec(p.get_pixel_size()),
        "image_size": [int(x) for x in p.get_image_size()],
        "trusted_range": _vec(p.get_trusted_range()),
    } for p in detector]
    beams = [iset.get_beam(i) for iset, i in images]
    result = {
        "format_class": fmt.__name__ if fmt else None,
        "n_imagesets": len(experiments.imagesets()),
        "n_experiments": len(experiments),
        "images": len(images),
        "panels": panels,
        "wavelengths_A": [float(b.get_wavelength()) for b in beams],
        "sample_to_source": _vec(beams[0].get_sample_to_source_direction()) if beams else None,
        "goniometer": any(iset.get_goniometer() is not None for iset, _ in images),
        "scan": any(iset.get_scan() is not None for iset, _ in images),
    }
    if images:  # the image's data decode (filters present, mapping resolves)
        iset, i = images[image]
        raw = iset.get_raw_data(i)
        result["pixels_read"] = int(sum(d.size() for d in raw))
    if arrays:
        mask = iset.get_mask(i)
        np.save(os.path.join(arrays, "mask.npy"), np.stack([m.as_numpy_array() for m in mask]))
        np.save(os.path.join(arrays, "data.npy"), np.stack([d.as_numpy_array() for d in raw]))
    _write(out, result)


def summary(workdir, out):
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    def load_expt(name):
        path = os.path.join(workdir, name)
        if not os.path.exists(path):
            return None
        return ExperimentListFactory.from_json_file(path, check_format=False)

    imported = load_expt("imported.expt")
    n_images = sum(len(e.imageset) for e in imported) if imported else 0
    result = {"images": n_images, "spots": [], "spots_per_image": [0] * n_images, "crystals": []}
    strong = os.path.join(workdir, "strong.refl")
    if os.path.exists(strong):
        refl = flex.reflection_table.from_file(strong)
        # Stills: one experiment per image, so "id" is the image's index.
        ids = list(refl["id"])
        xyz = refl["xyzobs.px.value"]
        panel = list(refl["panel"])
        intensity = list(refl["intensity.sum.value"])
        for i, p, (x, y, _), s in zip(ids, panel, xyz, intensity):
            result["spots"].append([int(i), int(p), float(x), float(y), float(s)])
            if 0 <= i < n_images:
                result["spots_per_image"][i] += 1
    indexed = load_expt("indexed.expt")
    if indexed is not None:
        refl_path = os.path.join(workdir, "indexed.refl")
        counts = {}
        if os.path.exists(refl_path):
            refl = flex.reflection_table.from_file(refl_path)
            for i in refl["id"]:
                counts[int(i)] = counts.get(int(i), 0) + 1
        for k, expt in enumerate(indexed):
            crystal = expt.crystal
            result["crystals"].append({
                "image": int(expt.imageset.indices()[0]),
                "unit_cell": [float(x) for x in crystal.get_unit_cell().parameters()],
                "space_group": str(crystal.get_space_group().info()),
                "space_group_number": int(crystal.get_space_group().type().number()),
                "A": [float(x) for x in crystal.get_A()],
                "indexed_spots": counts.get(k, 0),
            })
    _write(out, result)


def _write(out, result):
    tmp = out + ".part"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, out)


def main(argv):
    if len(argv) >= 3 and argv[0] == "read":
        arrays = argv[argv.index("--arrays") + 1] if "--arrays" in argv else None
        image = int(argv[argv.index("--image") + 1]) if "--image" in argv else 0
        read(argv[1], argv[2], arrays, image)
    elif len(argv) == 3 and argv[0] == "summary":
        summary(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
