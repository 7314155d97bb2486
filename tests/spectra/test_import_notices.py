"""TensorFlow's import notices are dropped from stderr; nothing else is."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys
    from server_ext.spectra.networks import import_notices_dropped, keras_module
    print("before", file=sys.stderr, flush=True)
    with import_notices_dropped():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...\\n"
                    b"an error written by C\\n")
        print("a warning written by Python", file=sys.stderr)
    try:
        with import_notices_dropped():
            raise ImportError("a failed import")
    except ImportError as e:
        print("caught:", e, file=sys.stderr, flush=True)
    keras_module()
    print("after", file=sys.stderr, flush=True)
""")


def test_import_notices_are_dropped_and_everything_else_kept():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, check=True)
    ours = ["before", "an error written by C", "a warning written by Python", "caught: a failed import",
            "after"]
    # in order, each once; TensorFlow may add lines of its own on other CPUs (cpu_feature_guard)
    assert [line for line in run.stderr.splitlines() if line in ours] == ours, run.stderr
    assert "oneDNN custom operations" not in run.stderr and "absl::InitializeLog" not in run.stderr


CRASH = textwrap.dedent("""
    import os
    from server_ext.spectra.networks import import_notices_dropped
    with import_notices_dropped():
        os.write(2, b"I0000 oneDNN custom operations are on.\\n"
                    b"F0000 cpu_feature_guard.cc] compiled to use AVX instructions, not available\\n")
        os.abort()  # as a fatal log line does
""")


def test_what_a_crashing_import_wrote_last_still_gets_out():
    """The lines are filtered in a process of their own: a fatal message is
    not lost with the process that wrote it."""
    run = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert run.stderr.splitlines() == [
        "F0000 cpu_feature_guard.cc] compiled to use AVX instructions, not available"], run.stderr
