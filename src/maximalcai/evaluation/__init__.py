"""Evaluation: held-out generations, verifiable instruction following (IFEval checkers), harmlessness,
over-refusal, head-to-head win rate, preference accuracy, bootstrap intervals and per-metric verdicts."""
