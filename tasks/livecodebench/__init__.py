"""LiveCodeBench: code generation problems, graded by running the program against public + private tests.

Two scenarios, both trials of the one runner: `codegen` (CWM's single-turn protocol, n samples per problem, each a
trial, pass@k) in `codegen.py`, and `agentic` (the CWM bash agent writes /workspace/solution.py) in `suite.py`.
"""
