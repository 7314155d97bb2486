"""The process running one spectra stream (engines only; started by :mod:`.streams`).

It classifies at the stream's own speed and sends the parent at most
``rate`` messages per second: the latest train's summary with the counters
and the phases by train so far (:meth:`.PhaseRuns.summary`);
while no train comes (a silent bridge, reconnecting), the counters alone
every ``QUIET_S`` seconds, so that a waiting stream is seen waiting.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from server_ext.spectra.results import PhaseRuns

QUIET_S = 1.0  # s without a train before the counters are sent on their own


def stats_dict(stats, state: str) -> dict:
    def finite(v):
        return float(v) if np.isfinite(v) else None

    return {"state": state, "trains": stats.trains, "spectra": stats.spectra, "received": stats.received,
            "spectra_per_s": finite(stats.spectra_per_s), "trains_per_s": finite(stats.trains_per_s),
            "latency_p50_ms": finite(1e3 * stats.latency(50)), "latency_p99_ms": finite(1e3 * stats.latency(99)),
            "gaps": stats.gaps, "dropped": stats.dropped, "malformed": stats.malformed,
            "malformed_trains": stats.malformed_trains, "reconnects": stats.reconnects,
            "unread_points": list(stats.unread_points), "unreadable_axis": stats.unreadable_axis,
            "axis_error": stats.axis_error, "elapsed_s": stats.elapsed}


def train_summary(result, classes, phases=None) -> dict:
    """One train's summary; with ``phases`` (the :class:`.PhaseRuns` it was
    added to last) its ``phase``: the run of trains it belongs to, and
    ``phase_runs``, how many runs so far."""
    n = len(result)
    fractions = {str(c): (float(np.count_nonzero(result.labels == c)) / n if n else 0.0) for c in classes}
    out = {"train_id": result.train_id, "pulses": n, "class_fractions": fractions,
           "mean_confidence": float(result.confidence.mean()) if n else None,
           "ambiguous_fraction": float(result.ambiguous.mean()) if n else None,
           "malformed": int(result.malformed)}
    if phases is not None and phases.runs:
        out.update(phase=list(phases.current()), phase_runs=len(phases.runs))
    return out


def open_stream(options: dict):
    """A :class:`SpectraStream` for the request's ``options`` (model dir + source)."""
    from server_ext.spectra import BinnedSpectraClassifier, SpectraStream

    clf = BinnedSpectraClassifier.load(options["model_dir"])
    if options.get("mask_points"):
        clf.mask_points(options["mask_points"])
    source = options["source"]
    kw = {k: source[k] for k in ("source", "key", "train_rate", "timeout", "sock", "max_reconnects",
                                 "axis_key", "axis_source", "train_ids")
          if source.get(k) is not None}
    if "max_reconnects" in source and "endpoint" in source:  # null: reconnect for ever, until stopped
        kw["max_reconnects"] = source["max_reconnects"]
    if source.get("source") is not None:
        kw["source_name"] = kw.pop("source")
    target = source.get("endpoint") or source["run"]
    return SpectraStream(clf, target, max_trains=options.get("max_trains"), axis=options.get("axis"),
                         queue_size=options.get("queue_size", 4), drop_oldest=options.get("drop_oldest"), **kw)


def open_results(options: dict, classes):
    """The stream's results file (``options["output"]``), or None."""
    from server_ext.spectra.results import ResultsFile

    if not options.get("output"):
        return None
    return ResultsFile(options["output"], classes, about=options.get("about"),
                       purity=options.get("purity", 0.9))


def main(conn, options: dict, rate: float, stop_conn) -> None:
    """Run the stream, sending ``{"type": "started"|"train"|"stats"|"end", ...}`` dicts through *conn*.

    Anything arriving on *stop_conn*, or its end (the server has gone), stops it.
    """
    period = 1.0 / rate if rate > 0 else 0.0
    stats = None
    stop, ended = threading.Event(), threading.Event()
    sending = threading.Lock()
    last = 0.0  # when the last train was sent
    unsent = None  # the latest train, when throttling held it back
    results = phases = None

    def send(message, quiet=False):
        with sending:
            if quiet and ended.is_set():  # nothing after the end, nor on a closed pipe
                return
            conn.send(message)

    try:
        stream = open_stream(options)
        stats = stream.stats
        classes = stream.classifier.classes_
        results = open_results(options, classes)
        # the phase of each run of trains, for the live view; the results file keeps its own
        phases = (results.phase_runs if results is not None
                  else PhaseRuns(classes, options.get("purity", 0.9)))

        def watch():
            try:
                stop_conn.recv()
            except (EOFError, OSError):
                pass
            stop.set()
            stream.stop()

        def while_quiet():
            while not ended.wait(QUIET_S):
                if time.monotonic() - last >= QUIET_S:
                    try:
                        send({"type": "stats", "stats": stats_dict(stats, "running")}, quiet=True)
                    except OSError:  # the server has gone; the watcher stops the stream
                        return

        threading.Thread(target=watch, daemon=True).start()
        send({"type": "started"})
        last = time.monotonic()
        threading.Thread(target=while_quiet, daemon=True).start()
        for result in stream:
            if results is not None:
                results.add(result)
            else:
                phases.add_result(result)
            unsent = result
            now = time.monotonic()
            if now - last >= period:
                last = now
                send({"type": "train", "train": train_summary(result, classes, phases),
                      "results": phases.summary(), "stats": stats_dict(stats, "running")})
                unsent = None
        state, error = ("stopped" if stop.is_set() else "finished"), None
    except Exception as e:  # noqa: BLE001 -- reported to the parent, which shows it
        state = "failed"
        error = str(e) if getattr(e, "user_error", False) else f"{type(e).__name__}: {e}"
    if results is not None:  # kept however the stream ended, saying how
        try:
            results.close(state, error=error, stats=stats_dict(stats, state))
        except Exception as e:  # noqa: BLE001 -- the stream's end is still reported
            state, error = "failed", f"writing the results to {options['output']} failed: {e}"
    summary = phases.summary() if phases is not None else None  # None: failed before the first
    ended.set()
    try:
        if unsent is not None:  # what the stream ended on, not the last train let through
            send({"type": "train", "train": train_summary(unsent, classes, phases),
                  "results": summary, "stats": stats_dict(stats, "running")})
        send({"type": "end", "error": error, "results": summary,
              "stats": stats_dict(stats, state) if stats is not None else {"state": state}})
    except OSError:  # the server has gone: nobody to tell
        pass
    conn.close()
