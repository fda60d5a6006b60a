"""CruxEval-O: output prediction, graded by running the program in a sandbox."""
