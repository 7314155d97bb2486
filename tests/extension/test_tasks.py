"""The worker-side adapter between the engines' progress reports and a job's progress."""

from collections import namedtuple

from server_ext.extension.tasks import _fit

FitProgress = namedtuple("FitProgress", "stage done total")  # the classifier's report (stage, done, total)


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, done, total, /, **detail):
        self.calls.append((done / total, detail))


class _FitWithProgress:
    def fit(self, X, y, axis=None, progress=None):
        progress(FitProgress("screen", 4, 4))
        for epoch in range(1, 5):
            progress(FitProgress("train", epoch, 4))
        progress(FitProgress("calibrate", 3, 3))
        return self


class _FitWithout:
    def fit(self, X, y, axis=None):
        self.fitted = True
        return self


def test_stage_reports_become_one_rising_fraction():
    rec = _Recorder()
    _fit(_FitWithProgress(), None, None, None, rec)
    fractions = [f for f, _ in rec.calls]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == 1.0
    assert rec.calls[2][1] == {"stage": "train", "done": 2, "total": 4}
    assert 0.1 < rec.calls[2][0] < 0.9


def test_a_classifier_without_progress_still_trains():
    rec = _Recorder()
    clf = _FitWithout()
    assert _fit(clf, None, None, None, rec) is clf and clf.fitted
    assert rec.calls == [(0.0, {"stage": "train"})]
