"""Execution traces in CWM's trace format: the format (`format`), a tracer (`tracer`), running it in a container or
subprocess (`run`), the neural-debugger comparison (`predict`) and a rendering for people (`readable`)."""
