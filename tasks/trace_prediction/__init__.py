"""Trace prediction: the model predicts a program's execution trace in CWM's format, frame by frame."""
