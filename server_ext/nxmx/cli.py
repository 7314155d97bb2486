"""``daas nxmx convert|validate|info``."""

import json
import sys
import warnings


def register(subparsers):
    """Add the ``nxmx`` subcommand to the ``daas`` parser."""
    p = subparsers.add_parser("nxmx", help="European XFEL run -> NeXus/NXmx files",
                              description="Convert EuXFEL runs to NXmx and check NXmx files.")
    sub = p.add_subparsers(dest="nxmx_command", metavar="ACTION", required=True)

    c = sub.add_parser("convert", help="write an NXmx master file for a run",
                       description="Write a NeXus/NXmx file of a run's detector frames that DIALS "
                       "and other NXmx readers open: by default a master file mapping the run's own "
                       "files (virtual datasets), or a self-contained compressed copy.")
    c.add_argument("run_dir", metavar="RUN_DIR", help="run directory (corrected data, e.g. .../proc/r0042)")
    c.add_argument("-o", "--output", required=True, metavar="OUT.nxs", help="the NXmx file to write")
    c.add_argument("--detector", metavar="SRC", help="detector source name or prefix (when the run has several)")
    c.add_argument("--geometry", metavar="FILE.geom", help="CrystFEL geometry (default: idealised layout, with a warning)")
    c.add_argument("--mode", choices=("virtual", "copy"), default="virtual",
                   help="virtual: map the run's files (default); copy: compressed self-contained copy"
                   " (see --compression)")
    c.add_argument("--compression", choices=("bitshuffle", "gzip"),
                   help="with --mode copy. bitshuffle (default): bitshuffle/LZ4, fast and small, but"
                   " readers need the HDF5 bitshuffle plugin (Debian: apt-get install hdf5-filter-plugin;"
                   " Python: import hdf5plugin); gzip: HDF5's built-in shuffle+deflate, readable by"
                   " any HDF5 without plugins")
    c.add_argument("--trains", metavar="START:STOP", type=_train_slice,
                   help="train indices within the run, Python slice style (e.g. 0:100)")
    c.add_argument("--min-pulse-energy", metavar="UJ", type=float, help="keep frames with XGM pulse energy >= UJ µJ")
    c.add_argument("--photon-energy", metavar="KEV", type=float, help="photon energy (instead of the XGM's wavelength)")
    c.add_argument("--distance", metavar="MM", type=float, help="sample-detector distance in mm")
    c.add_argument("--overwrite", action="store_true", help="replace OUT.nxs if it exists")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_convert)

    v = sub.add_parser("validate", help="check an NXmx file with independent readers (exit 0 only if compliant)",
                       description="Checks: structure, nxmx, pynxtools, nexusformat and, where DIALS is"
                       " installed, dxtbx (DIALS' own reader, run in DIALS' interpreter). A checker that"
                       " is not installed is listed as not checked, with how to get it.")
    v.add_argument("file", metavar="FILE.nxs", help="the NXmx file to check")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument("--errors-only", action="store_true", help="list errors, not warnings")
    v.set_defaults(func=_validate)

    i = sub.add_parser("info", help="summarise a run's detectors, trains, pulses and XGMs",
                       description="Print a run's trains, its detectors (modules, frame shape, "
                       "frames per train) and XGMs: what convert's --detector and "
                       "--min-pulse-energy can choose from.")
    i.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=_info)
    return p


def _train_slice(text):
    import argparse
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(x) if x.strip() else None for x in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP (train indices), got {text!r}") from None
    return slice(start, stop)


def _convert(args):
    from tqdm import tqdm

    from .convert import convert_run

    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="part", desc="nxmx", file=sys.stderr)
        bar.update(done - bar.n)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, cat, *a, **k: print(f"daas nxmx: warning: {msg}", file=sys.stderr)
        try:
            out = convert_run(
                args.run_dir, args.output, detector=args.detector, geometry=args.geometry,
                mode=args.mode, trains=args.trains, min_pulse_energy=args.min_pulse_energy,
                photon_energy=args.photon_energy, distance=args.distance, overwrite=args.overwrite,
                progress=None if args.no_progress else progress, compression=args.compression)
        finally:
            if bar is not None:
                bar.close()
    print(out)
    if args.mode == "copy" and (args.compression or "bitshuffle") == "bitshuffle":
        print("daas nxmx: note: the data are bitshuffle/LZ4 compressed: readers need the HDF5"
              " bitshuffle plugin (DIALS from Debian: apt-get install hdf5-filter-plugin, or"
              " HDF5_PLUGIN_PATH=<hdf5plugin>/plugins); --compression gzip needs none",
              file=sys.stderr)
    return 0


def _validate(args):
    from .validation import validate

    report = validate(args.file)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        shown = report.errors if args.errors_only else report.findings
        print(report.__str__().splitlines()[0])
        for f in shown:
            print(f"  {f}")
        for name, text in report.read_lines():
            print(f"  [{name}] read: {text}")
        for name, hint in report.unavailable.items():
            print(f"  [{name}] not checked: {hint}")
        if report.ignored:
            print(f"  ({len(report.ignored)} known pynxtools false positives ignored:"
                  " reserved suffix on pixel_mask/module_offset)")
    return 0 if report.ok else 1


def _info(args):
    from .info import inspect_run

    info = inspect_run(args.run_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"trains: {info['trains']} ({info['first_train']} .. {info['last_train']})")
    for d in info["detectors"]:
        print(f"detector {d['name']} ({d['kind']}): {len(d['modules'])} modules, frames {d['frame_shape']}"
              f" {d['dtype']}, up to {d['frames_per_train_max']} frames/train, {d['frames']} frames")
    for name in info["unsupported_detectors"]:
        print(f"detector {name}: not supported")
    if not info["detectors"] and not info["unsupported_detectors"]:
        print("no detector")
    print("XGM: " + (", ".join(info["xgm"]) or "none"))
    return 0
