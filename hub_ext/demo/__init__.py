"""`daas demo` and `daas setup`: demo data, demo hub configuration, hub process control, set-up tools. Not library code."""
